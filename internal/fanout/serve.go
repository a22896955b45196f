package fanout

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// StreamWriter is where a Goroutine subscriber's events go: an
// http.ResponseWriter with its http.ResponseController (ResponseStream
// makes one). SetWriteDeadline must be safe to call while a Write is in
// progress, to cut it short when the stream is closed; the
// ResponseController's is.
type StreamWriter interface {
	Write([]byte) (int, error)
	Flush() error
	SetWriteDeadline(time.Time) error
}

// ResponseStream is w as a StreamWriter, through its ResponseController.
func ResponseStream(w http.ResponseWriter) StreamWriter {
	return responseStream{w, http.NewResponseController(w)}
}

type responseStream struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (r responseStream) Flush() error                       { return r.rc.Flush() }
func (r responseStream) SetWriteDeadline(t time.Time) error { return r.rc.SetWriteDeadline(t) }

// errEnded says a batch was cut short because the stream was closed.
var errEnded = errors.New("stream ended")

// Serve writes a Goroutine subscriber's events to w until the stream ends
// (ctx done counts as ReasonClientGone), then removes s from the hub. The
// handler has sent the headers and the replay on w already.
//
// Writes go in chunks of at most 16 KiB, each under its own deadline of
// WriteTimeout, and so does the flush: a client that keeps taking bytes is
// never timed out, one that takes no chunk for WriteTimeout is closed as
// stalled. Where nothing is half written, a told reason ends with the
// Disconnect event.
func (s *Subscriber) Serve(ctx context.Context, w StreamWriter) {
	h := s.hub
	if s.mode != Goroutine {
		h.log.Error("fanout: Serve called on a pooled subscriber", "rooms", strings.Join(s.rooms, ","))
		s.Cancel()
		return
	}
	defer h.remove(s)
	s.mu.Lock()
	s.serving = true
	s.mu.Unlock()
	s.setTarget(w)

	var batch []*Event
	clean := true // no event half written: a last event can follow
	for {
		if ctx.Err() != nil {
			// Checked between writes only: net/http also cancels ctx when
			// a write fails, and then the write's error says why.
			s.close(ReasonClientGone)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			break
		}
		if len(s.q.evs) == 0 {
			s.mu.Unlock()
			select {
			case <-s.notify:
			case <-s.done:
			case <-ctx.Done():
			}
			continue
		}
		batch = s.q.take(batch[:0])
		s.mu.Unlock()
		var err error
		clean, err = s.writeBatch(w, batch)
		clear(batch)
		if err != nil {
			s.writeFailed(err)
			break
		}
	}
	s.setTarget(nil) // from here on no interrupt may reach w
	s.mu.Lock()
	reason := s.reason
	s.q.reset()
	s.mu.Unlock()
	if fw := h.farewell[reason]; fw != nil && clean {
		w.SetWriteDeadline(time.Now().Add(min(h.cfg.WriteTimeout, farewellTimeout)))
		if _, err := w.Write(fw.Wire); err == nil {
			w.Flush()
		}
	}
	// net/http keeps the connection for the next request and, without a
	// server WriteTimeout, leaves its write deadline as it is.
	w.SetWriteDeadline(time.Time{})
}

// writeBatch writes evs to w, chunked under write deadlines, and flushes.
// It reports whether it stopped at an event boundary.
func (s *Subscriber) writeBatch(w StreamWriter, evs []*Event) (clean bool, err error) {
	timeout := s.hub.cfg.WriteTimeout
	budget := 0 // bytes the current deadline still covers
	events, bytes := 0, 0
	defer func() { s.wrote(events, bytes) }()
	multi := s.pos.multi()
	var own [1][]byte
	var born int64 // the oldest timed event's birth
	for _, ev := range evs {
		born = earlier(born, ev)
		// Its own wire, or on a stream of several rooms a composite id
		// line and the rest, as in pending.add, which also says why the
		// queue's bytes are corrected.
		own[0] = ev.Wire
		parts := own[:]
		if multi && ev.hasIDLine() {
			parts = s.pos.Wire(ev)
			bytes += ev.IDLen - len(parts[0])
		}
		started := false // a byte of ev is written
		for _, b := range parts {
			for len(b) > 0 {
				if budget == 0 {
					s.wrote(events, bytes)
					events, bytes = 0, 0
					if !s.arm(timeout) {
						return !started, errEnded
					}
					budget = chunkSize
				}
				n, err := w.Write(b[:min(len(b), budget)])
				bytes += n
				started = started || n > 0
				if err != nil {
					return false, err
				}
				b, budget = b[n:], budget-n
			}
		}
		events++
	}
	// The flush sends what net/http buffered: at most some KiB, which the
	// current deadline covers unless this batch used up its chunk.
	if budget == 0 && !s.arm(timeout) {
		return true, errEnded
	}
	if err := w.Flush(); err != nil {
		return true, err
	}
	s.hub.noteLatency(born)
	return true, nil
}

// writeFailed closes s after a failed write: stalled if the write timed
// out, gone otherwise, unless it was closed already (errEnded, or an
// interrupt that made the write fail).
func (s *Subscriber) writeFailed(err error) {
	reason := ReasonClientGone
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		reason = ReasonStalled
	}
	s.mu.Lock()
	first := s.closeLocked(reason)
	s.mu.Unlock()
	if first && reason == ReasonStalled {
		s.hub.logEviction(s, reason)
	}
}
