package fanout

import (
	"errors"
	"os"
	"sync"
)

// The writer pool serves every pooled subscriber with a few goroutines. A
// writer takes a subscriber from the run queue, moves everything it has
// queued into its pending writes and writes them with one non-blocking
// writev. A writer never waits on a socket: when the socket does not take
// everything, the subscriber is handed to a goroutine of its own (drain.go)
// and the writer moves on.

// runQueue is the FIFO of pooled subscribers with work for a writer. A
// subscriber is in it at most once (its state is scheduled), so it never
// holds more than the open streams.
type runQueue struct {
	mu    sync.Mutex // guards subs and head
	subs  []*Subscriber
	head  int           // subs[head:] are waiting
	ready chan struct{} // wake-ups for idle writers, one per push while there is room
}

func newRunQueue(writers int) runQueue {
	return runQueue{ready: make(chan struct{}, writers)}
}

// push queues s and wakes a writer. It never blocks: when ready is full,
// that many wake-ups are pending already and a woken writer pops until the
// queue is empty.
func (q *runQueue) push(s *Subscriber) {
	q.mu.Lock()
	q.subs = append(q.subs, s)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the oldest waiting subscriber, or nil.
func (q *runQueue) pop() *Subscriber {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.subs) {
		return nil
	}
	s := q.subs[q.head]
	q.subs[q.head] = nil
	q.head++
	switch {
	case q.head == len(q.subs):
		q.subs, q.head = q.subs[:0], 0
		if cap(q.subs) > keepCap {
			q.subs = nil
		}
	case q.head > cap(q.subs)/2: // never emptied under load: reclaim the front
		n := copy(q.subs, q.subs[q.head:])
		clear(q.subs[n:])
		q.subs, q.head = q.subs[:n], 0
	}
	return s
}

// poolWriter is one shared writer goroutine and its scratch space, reused
// for every subscriber it services.
type poolWriter struct {
	h   *Hub
	evs []*Event
	wv  *writev
}

func newPoolWriter(h *Hub) *poolWriter { return &poolWriter{h: h, wv: newWritev()} }

// run services subscribers until the hub stops.
func (w *poolWriter) run() {
	for {
		if s := w.h.runq.pop(); s != nil {
			w.service(s)
			continue
		}
		select {
		case <-w.h.stop:
			return
		case <-w.h.runq.ready:
		}
	}
}

// service writes what s has queued. The caller holds s's write token
// (state scheduled) and passes it on: back to the run queue, to a drain
// goroutine, or to nobody (idle, or finished).
func (w *poolWriter) service(s *Subscriber) {
	h := w.h
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		h.finish(s, w.wv)
		return
	}
	w.evs = s.q.take(w.evs[:0])
	s.mu.Unlock()

	ping := false
	for _, ev := range w.evs {
		ping = ping || ev == h.cfg.Ping
		s.pending.add(ev, s.pos)
	}
	clear(w.evs)
	// Nobody reads a pooled connection, and a write to a peer that has
	// closed still succeeds once: a heartbeat peeks instead.
	if ping && peerClosed(s.rc) {
		s.mu.Lock()
		s.closeLocked(ReasonClientGone)
		s.mu.Unlock()
		h.finish(s, w.wv)
		return
	}

	var err error
	for !s.pending.empty() {
		bufs, size := s.pending.next()
		var n int
		n, err = w.wv.write(s.conn, s.rc, bufs, false)
		s.pending.advance(n)
		if err != nil || n < size {
			break // the socket is full (or failed): no second try here
		}
	}
	events, bytes := s.pending.written()
	h.noteLatency(s.pending.doneBorn())

	s.mu.Lock()
	s.q.wrote(events, bytes)
	switch {
	case s.closed:
		s.mu.Unlock()
		h.finish(s, w.wv)
	case err != nil && !wouldBlock(err) && !errors.Is(err, os.ErrDeadlineExceeded):
		s.closeLocked(ReasonClientGone)
		s.mu.Unlock()
		h.finish(s, w.wv)
	case !s.pending.empty():
		s.state = draining
		s.mu.Unlock()
		h.draining.Add(1)
		h.wg.Go(func() { h.drain(s) })
	case len(s.q.evs) > 0: // more arrived meanwhile: to the back of the line
		s.mu.Unlock()
		h.runq.push(s)
	default:
		s.state = idle
		s.mu.Unlock()
	}
}
