package fanout

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of Subscribe. Their messages are shown to users (as the body of a
// 503 or 429 answer).
var (
	ErrTooManyStreams = errors.New("this server has too many open streams; try again in a moment")
	ErrSessionStreams = errors.New("too many open chat windows for this login; close one and reload")
	ErrClosed         = errors.New("the server is shutting down")
)

// Hub fans events out to the streams open in this process. Only the hub
// touches its registry of subscribers. The zero value is not valid: use New.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	farewell [numReasons]*Event // Config.Disconnect of each told reason, built once

	mu        sync.RWMutex // guards the fields up to gone
	reg       registry
	releasing int           // streams out of the registry whose release has not returned
	closed    bool          // Shutdown began: no new subscribers
	degraded  bool          // the last SetDegraded
	status    *Event        // Status(true), queued to new subscribers while degraded
	isGone    bool          // gone is closed
	gone      chan struct{} // closed once closed is set, the registry is empty and no release runs
	stopped   chan struct{} // closed when Shutdown has stopped the hub's goroutines

	runq runQueue       // pooled subscribers waiting for a shared writer
	stop chan struct{}  // closed when the writers and the heartbeat must end
	wg   sync.WaitGroup // the writers, the heartbeat and the drain goroutines

	delivered atomic.Int64             // events accepted into a queue
	closes    [numReasons]atomic.Int64 // streams ended, by reason
	draining  atomic.Int64             // pooled streams on a goroutine of their own
}

// New starts a hub: its shared writers and its heartbeat. Shutdown stops
// them. log may be nil.
func New(cfg Config, log *slog.Logger) *Hub {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		cfg:     cfg,
		log:     log,
		reg:     newRegistry(),
		gone:    make(chan struct{}),
		stopped: make(chan struct{}),
		runq:    newRunQueue(cfg.Writers),
		stop:    make(chan struct{}),
	}
	if cfg.Disconnect != nil {
		for r := range numReasons {
			if r.Told() {
				h.farewell[r] = cfg.Disconnect(r)
			}
		}
	}
	for range cfg.Writers {
		w := newPoolWriter(h)
		h.wg.Go(w.run)
	}
	h.wg.Go(h.heartbeats)
	return h
}

// Subscribe adds a stream of rooms (in any order; duplicates count once)
// for session. It gets the events broadcast to each of its rooms, once,
// and those for every stream; a stream of no room gets only the latter
// (status, pings) and is ended like any other. Its events queue from now
// on; a Pooled subscriber is written once given its connection (Attach), a
// Goroutine one by Serve. Either way it must be attached, served or
// cancelled. While the hub is degraded, its queue starts with Status(true).
//
// release, unless nil, is called exactly once when the stream has ended,
// however it ends (Cancel, client gone, evicted, stalled, logged out, shut
// down), after it has left the registry: a Broadcast no longer reaches it,
// and it no longer counts in Stats or against its session's cap. It is
// called without the hub's locks held, on whichever goroutine ends the
// stream, which for a pooled stream is one of the few writers shared by
// every pooled stream: it must not block (hand slow work, such as a call to
// Redis, to a goroutine of its own). Shutdown returns once the release of
// every stream it ended has returned. When Subscribe fails, there is no
// stream and release is not called.
//
// A session at its cap of streams gets ErrSessionStreams, but only after
// the streams of that session whose peer has gone (a reloaded tab) were
// closed and did not count.
func (h *Hub) Subscribe(rooms []string, session string, mode Mode, release func()) (*Subscriber, error) {
	s := newSubscriber(h, sortRooms(rooms), session, mode, release)
	var dead []*Subscriber
	h.mu.Lock()
	err := h.admitLocked(session, &dead)
	if err == nil {
		if h.degraded && h.status != nil {
			s.q.admit(h.status, h.cfg.QueueEvents, h.cfg.QueueBytes)
		}
		h.reg.add(s)
	}
	h.mu.Unlock()
	for _, d := range dead {
		d.interrupt()
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// admitLocked says whether one more stream of session may open. Streams of
// the session whose peer closed are closed on the way (appended to dead).
func (h *Hub) admitLocked(session string, dead *[]*Subscriber) error {
	switch {
	case h.closed:
		return ErrClosed
	case h.reg.total() >= h.cfg.MaxStreams:
		return ErrTooManyStreams
	}
	limit := h.cfg.StreamsPerSession
	if limit <= 0 || len(h.reg.sessions[session]) < limit {
		return nil
	}
	live := 0
	for _, s := range h.reg.sessions[session] {
		s.mu.Lock()
		if !s.closed && s.rc != nil && peerClosed(s.rc) && s.closeLocked(ReasonClientGone) {
			*dead = append(*dead, s)
		}
		if !s.closed {
			live++
		}
		s.mu.Unlock()
	}
	if live >= limit {
		return ErrSessionStreams
	}
	return nil
}

// SessionStreams is the number of open streams of session in this
// process that are not closed: what counts against its cap here. Other
// instances' streams are counted by the caller (in Redis).
func (h *Hub) SessionStreams(session string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, s := range h.reg.sessions[session] {
		s.mu.Lock()
		if !s.closed {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// remove takes s out of the registry, then calls its release; later calls
// do nothing. The caller must not hold s.mu.
func (h *Hub) remove(s *Subscriber) {
	h.mu.Lock()
	first := !s.removed
	if first {
		s.removed = true
		h.reg.remove(s)
		h.releasing++
	}
	h.mu.Unlock()
	if !first {
		return
	}
	if s.release != nil {
		s.release()
	}
	if h.cfg.Closed != nil {
		h.cfg.Closed(s.summary())
	}
	h.mu.Lock()
	h.releasing--
	h.checkGoneLocked() // Shutdown waits for every release
	h.mu.Unlock()
}

// checkGoneLocked closes gone once Shutdown has begun, the registry is
// empty and no release is running. The caller holds h.mu.
func (h *Hub) checkGoneLocked() {
	if h.closed && !h.isGone && h.reg.total() == 0 && h.releasing == 0 {
		h.isGone = true
		close(h.gone)
	}
}

// Broadcast queues ev to every stream of room, once however many rooms
// the stream has. ev.Room must be room: it is the entry a message advances
// in the position of a stream of several rooms. Broadcast never blocks on
// a stream: one whose backlog would exceed a bound is evicted as slow
// instead. Events broadcast by one goroutine reach every subscriber in
// that order.
func (h *Hub) Broadcast(room string, ev *Event) {
	var evicted []*Subscriber
	h.mu.RLock()
	n := h.offerAll(h.reg.rooms[room], ev, &evicted)
	h.mu.RUnlock()
	h.delivered.Add(n)
	h.evicted(evicted)
}

// BroadcastAll queues ev to every stream, once, whatever its rooms.
func (h *Hub) BroadcastAll(ev *Event) {
	var evicted []*Subscriber
	h.mu.RLock()
	n := h.offerAll(h.reg.all, ev, &evicted)
	h.mu.RUnlock()
	h.delivered.Add(n)
	h.evicted(evicted)
}

// offerAll offers ev to subs and returns how many took it; those it evicted
// are appended to evicted. The caller holds h.mu.
func (h *Hub) offerAll(subs []*Subscriber, ev *Event, evicted *[]*Subscriber) int64 {
	var n int64
	for _, s := range subs {
		switch s.offer(ev) {
		case admitted:
			n++
		case overflow:
			*evicted = append(*evicted, s)
		}
	}
	return n
}

// evicted finishes the evictions of a broadcast, outside the hub's lock.
func (h *Hub) evicted(subs []*Subscriber) {
	for _, s := range subs {
		s.interrupt()
		h.logEviction(s, ReasonSlow)
	}
}

// noteLatency reports a completed write whose oldest timed event was born
// then (0: none was timed). A clock behind the publisher's counts as 0.
func (h *Hub) noteLatency(born int64) {
	if born == 0 || h.cfg.Latency == nil {
		return
	}
	h.cfg.Latency(max(0, time.Duration(time.Now().UnixNano()-born)))
}

// logEviction logs, once per stream, that the server ended it because its
// client did not keep up.
func (h *Hub) logEviction(s *Subscriber, reason Reason) {
	s.mu.Lock()
	events, bytes := s.q.events, s.q.bytes
	s.mu.Unlock()
	h.log.Info("stream evicted", "reason", reason, "rooms", strings.Join(s.rooms, ","), "mode", s.mode,
		"backlog_events", events, "backlog_bytes", bytes,
		"queue_events", h.cfg.QueueEvents, "queue_bytes", h.cfg.QueueBytes)
}

// SetDegraded records whether delivery works fully (the broker reaches its
// store) and, when that changes, queues Status(degraded) to every stream.
func (h *Hub) SetDegraded(degraded bool) {
	var evicted []*Subscriber
	var n int64
	h.mu.Lock()
	if h.degraded != degraded {
		h.degraded = degraded
		h.status = nil
		if h.cfg.Status != nil {
			ev := h.cfg.Status(degraded)
			if degraded {
				h.status = ev
			}
			// Under the write lock, so that a stream subscribing meanwhile
			// gets the status exactly once, and changes arrive in order.
			n = h.offerAll(h.reg.all, ev, &evicted)
		}
	}
	h.mu.Unlock()
	h.delivered.Add(n)
	h.evicted(evicted)
}

// EndSession closes the streams of session with ReasonLoggedOut.
func (h *Hub) EndSession(session string) { h.EndSessionFor(session, ReasonLoggedOut) }

// EndSessionFor closes the streams of session with reason (told to the
// client when reason.Told()).
func (h *Hub) EndSessionFor(session string, reason Reason) {
	h.mu.RLock()
	subs := slices.Clone(h.reg.sessions[session])
	h.mu.RUnlock()
	for _, s := range subs {
		s.close(reason)
	}
}

// Shutdown closes every stream with ReasonShutdown, waits until they are
// gone (removed, and their release returned) or ctx is done, then stops
// the hub's goroutines. A later call waits (bounded by its ctx) for the
// first to finish. Clients reconnect, to another instance behind a load
// balancer.
func (h *Hub) Shutdown(ctx context.Context) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		select {
		case <-h.stopped:
		case <-ctx.Done():
		}
		return
	}
	h.closed = true
	all := slices.Clone(h.reg.all)
	h.checkGoneLocked()
	h.mu.Unlock()
	for _, s := range all {
		s.close(ReasonShutdown)
	}
	select {
	case <-h.gone:
	case <-ctx.Done():
		h.log.Warn("streams not all ended and released at the shutdown deadline", "streams", h.Stats().Streams)
	}
	close(h.stop)
	h.wg.Wait()
	// A stream scheduled when the writers stopped is finished here.
	wv := newWritev()
	for s := h.runq.pop(); s != nil; s = h.runq.pop() {
		h.finish(s, wv)
	}
	close(h.stopped)
}
