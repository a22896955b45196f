package fanout

import (
	"errors"
	"os"
	"time"
)

// drain is the goroutine of a pooled subscriber whose socket was full: it
// holds the write token and waits for the socket to take the pending bytes.
// Each wait is bounded by WriteTimeout from the last byte written, so a
// peer that reads slowly but steadily keeps its stream, and one that takes
// nothing for WriteTimeout is closed as stalled.
//
// Once the pending bytes are written it goes on with whatever was queued
// meanwhile, and hands s back to the pool (idle) only when the queue is
// empty too: a subscriber that has just filled its socket is likely to fill
// it again, and leaving it here keeps it off the shared writers and saves a
// goroutine start per burst. An idle stream still costs no goroutine.
//
// Closing s interrupts the wait (Subscriber.interrupt). The hub owns this
// goroutine: Shutdown closes every stream, then waits for it.
func (h *Hub) drain(s *Subscriber) {
	defer h.draining.Add(-1)
	wv := newWritev()
	var evs []*Event
	for {
		events, bytes := s.pending.written()
		h.noteLatency(s.pending.doneBorn())
		s.mu.Lock()
		s.q.wrote(events, bytes)
		if s.closed {
			s.mu.Unlock()
			h.finish(s, wv)
			return
		}
		if s.pending.empty() {
			if len(s.q.evs) == 0 {
				// Back to the pool, whose writes must not meet this
				// goroutine's deadline. No interrupt can come: s is open
				// and we hold s.mu.
				s.conn.SetWriteDeadline(time.Time{})
				s.state = idle
				s.mu.Unlock()
				return
			}
			evs = s.q.take(evs[:0])
		}
		s.mu.Unlock()
		for _, ev := range evs {
			s.pending.add(ev, s.pos)
		}
		clear(evs)
		evs = evs[:0]

		if !s.arm(h.cfg.WriteTimeout) {
			continue // closed meanwhile: finished above
		}
		bufs, _ := s.pending.next()
		n, err := wv.write(s.conn, s.rc, bufs, true) // returns once ≥1 byte is written
		s.pending.advance(n)
		timedOut := errors.Is(err, os.ErrDeadlineExceeded)
		switch {
		case err == nil, timedOut && n > 0:
			// Progress: the next arm restarts the stall clock.
		case timedOut:
			s.mu.Lock()
			stalled := s.closeLocked(ReasonStalled) // unless an interrupt closed it first
			s.mu.Unlock()
			if stalled {
				h.logEviction(s, ReasonStalled)
			}
		default:
			s.mu.Lock()
			s.closeLocked(ReasonClientGone)
			s.mu.Unlock()
		}
	}
}
