package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/fanout"
)

// streamConfig is the SSE endpoint's tuning.
type streamConfig struct {
	retry        time.Duration       // reconnection delay the browser is told to use
	pooled       bool                // serve plain HTTP/1 streams from the hub's shared writers
	replay       broker.ReplayLimits // most one (re)connection is replayed
	writeTimeout time.Duration       // a write that makes no progress this long ends the stream
}

// maxClockSkew is how far in the future a Last-Event-ID may lie and still be
// taken for a position of this history (a page rendered while Redis was
// away carries one taken from the clock); anything further is reported as
// unknown.
const maxClockSkew = time.Minute

// handleStream serves GET /stream: the live event stream of the default room.
//
// The order of a (re)connection is what makes it lossless: subscribe to the
// hub first (live messages start queueing), then read the newest stored ID,
// replay history up to it, and let the hub drop queued messages the replay
// covered. The client's position comes from the Last-Event-ID header (a
// reconnecting EventSource) or, for a page's first connection, the
// last_event_id query parameter; the header wins. Without either, the
// stream starts with live messages (the tutorial's behaviour).
func handleStream(user func(*http.Request) (identity, bool), b *broker.Broker, h *fanout.Hub, cfg streamConfig, log *slog.Logger) http.Handler {
	prelude := streamPrelude(cfg.retry)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		if r.Method == http.MethodHead { // headers only: no subscription, no body
			sseHeaders(w.Header())
			w.WriteHeader(http.StatusOK)
			return
		}
		room := chat.DefaultRoom
		var first bytes.Buffer // prelude and notices, written with the headers
		first.Write(prelude)
		from, resume, err := startPosition(r)
		if err != nil {
			first.Write(noticeEvent(notice{Code: "bad-last-event-id",
				Text: "Ignoring a malformed last event ID; showing new messages from now on."}).Wire)
		}

		// Pooled serving writes to the raw socket: over TLS a write that
		// hits its deadline breaks the connection for good, so TLS and
		// HTTP/2 streams are served by their own goroutine.
		mode := fanout.Goroutine
		if cfg.pooled && r.ProtoMajor == 1 && r.TLS == nil {
			mode = fanout.Pooled
		}
		s, err := h.Subscribe(room, who.SID, mode)
		switch {
		case errors.Is(err, fanout.ErrSessionStreams):
			httpError(w, http.StatusTooManyRequests, err.Error())
			return
		case err != nil:
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		}

		var plan *broker.ReplayPlan
		if resume {
			plan, err = planReplay(r, b, room, from, cfg.replay, &first)
			if err != nil {
				// Without the replay, live messages would leave a gap.
				log.Warn("stream replay failed", "err", err)
				s.Cancel()
				w.Header().Set("Retry-After", "2")
				httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; retrying shortly")
				return
			}
			s.SkipUpTo(plan.Upto())
		}

		out, err := openStream(w, mode, cfg.writeTimeout)
		if errors.Is(err, errGoneAtStart) {
			s.Cancel() // the client left before the response head was written
			return
		}
		if err != nil {
			log.Error("opening stream", "err", err)
			s.Cancel()
			httpError(w, http.StatusInternalServerError, "could not open the stream")
			return
		}
		err = out.write(first.Bytes())
		if err == nil && plan != nil {
			err = replay(r, plan, out)
		}
		if err != nil {
			// The client went away or stopped reading during the replay,
			// or Redis failed mid-replay: end the stream; the client
			// resumes from the last message it got.
			s.Cancel()
			out.close()
			return
		}
		if mode == fanout.Pooled {
			if err := s.Attach(out.conn); err != nil {
				log.Error("handing the stream to the writers", "err", err)
				s.Cancel()
				out.close()
			}
			return
		}
		s.Serve(r.Context(), out)
	})
}

// startPosition returns the position the client resumes from: the
// Last-Event-ID header (an ID this server sent), else the last_event_id
// query parameter (a page's position, which may also be "0-0": the history
// was empty). resume is false when there is none, or it is malformed (err).
func startPosition(r *http.Request) (from chat.ID, resume bool, err error) {
	if raw := r.Header.Get("Last-Event-ID"); raw != "" {
		from, err = chat.ParseID(raw)
		return from, err == nil, err
	}
	if raw := r.URL.Query().Get("last_event_id"); raw != "" {
		from, err = chat.ParsePosition(raw)
		return from, err == nil, err
	}
	return chat.ID{}, false, nil
}

// planReplay reads the newest stored ID (after subscribing: everything
// newer arrives live) and plans the replay from from up to it, adding the
// notices the client should see to first.
func planReplay(r *http.Request, b *broker.Broker, room string, from chat.ID, lim broker.ReplayLimits, first *bytes.Buffer) (*broker.ReplayPlan, error) {
	upto, err := b.Newest(r.Context(), room)
	if err != nil {
		return nil, err
	}
	if from.After(upto) {
		// A position newer than every stored message: a page rendered
		// from the clock while Redis was away, or an ID this history never
		// issued (forged, or from a Redis that lost data). Everything after
		// upto arrives live, so start there; trusting the ID would hold
		// back live messages until Redis reaches it.
		if from.Ms > uint64(time.Now().Add(maxClockSkew).UnixMilli()) {
			first.Write(noticeEvent(notice{Code: "bad-last-event-id",
				Text: "Ignoring an unknown last event ID; showing new messages from now on."}).Wire)
		}
		from = upto
	}
	plan, err := b.PlanReplay(r.Context(), room, from, upto, lim)
	if err != nil {
		return nil, err
	}
	if plan.Trimmed || plan.Capped {
		first.Write(noticeEvent(notice{Code: "history-trimmed", Before: plan.Start().String(),
			Text: "Older messages you have not seen are not shown here."}).Wire)
	}
	return plan, nil
}

// replay writes the plan's messages page by page.
func replay(r *http.Request, plan *broker.ReplayPlan, out *streamOut) error {
	var buf []byte
	_, err := plan.Run(r.Context(), func(ms []chat.Message) error {
		buf = buf[:0]
		for _, m := range ms {
			buf = append(buf, messageEvent(m).Wire...)
		}
		return out.write(buf)
	})
	return err
}

// sseHeaders are sent before the first byte of every stream: no caching, no
// proxy buffering (nginx honours X-Accel-Buffering).
func sseHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// streamOut is where a stream's first bytes (headers, prelude, notices,
// replay) are written by the request goroutine, before the hub takes over.
type streamOut struct {
	fanout.StreamWriter
	conn    net.Conn // pooled: the connection hijacked from net/http
	timeout time.Duration
}

// openStream starts the response. A pooled stream's connection is taken
// over from net/http (http.ResponseController.Hijack) and the response head
// written by hand, with every header the middleware set; the request
// goroutine and its buffers are released once the hub has it.
func openStream(w http.ResponseWriter, mode fanout.Mode, timeout time.Duration) (*streamOut, error) {
	rc := http.NewResponseController(w)
	if mode == fanout.Goroutine {
		rc.SetReadDeadline(time.Time{}) // the server's ReadTimeout must not end the stream
		sseHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		return &streamOut{StreamWriter: fanout.ResponseStream(w), timeout: timeout}, nil
	}
	hdr := w.Header().Clone()
	sseHeaders(hdr)
	hdr.Set("Connection", "close") // the body ends when the connection does
	conn, _, err := rc.Hijack()
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{}) // clear the server's read and write deadlines
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	hdr.Write(&head)
	head.WriteString("\r\n")
	out := &streamOut{StreamWriter: connWriter{conn}, conn: conn, timeout: timeout}
	if err := out.write(head.Bytes()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %v", errGoneAtStart, err)
	}
	return out, nil
}

// errGoneAtStart: a pooled stream's connection, already taken from net/http,
// did not take the response head.
var errGoneAtStart = errors.New("the client went away before the stream started")

// write writes b in chunks, each under its own deadline: a client that keeps
// taking bytes is never cut off, one that takes none for the write timeout is.
func (o *streamOut) write(b []byte) error {
	const chunk = 16 << 10
	for len(b) > 0 {
		o.SetWriteDeadline(time.Now().Add(o.timeout))
		n, err := o.Write(b[:min(len(b), chunk)])
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return o.Flush()
}

// close ends a stream the hub never took.
func (o *streamOut) close() {
	if o.conn != nil {
		o.conn.Close()
	}
}

// connWriter is a pooled stream's connection before the hub has it.
type connWriter struct{ net.Conn }

func (connWriter) Flush() error { return nil }
