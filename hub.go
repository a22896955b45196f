package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// event is one SSE event, encoded once and shared read-only by every
// subscriber it is queued to.
type event struct {
	id   streamID // zero for events that carry no ID (status, notices, pings)
	wire []byte   // the complete encoding, ending in a blank line
}

// pingEvent is the heartbeat: an SSE comment, ignored by EventSource, which
// keeps proxies from closing idle streams and exposes dead peers to writes.
var pingEvent = &event{wire: []byte(": ping\n\n")}

// disconnectReason says why the server ended a stream.
type disconnectReason int

const (
	reasonNone       disconnectReason = iota
	reasonClientGone                  // the client closed the connection or a write failed
	reasonSlow                        // its buffer filled: it did not keep up
	reasonStalled                     // a write made no progress within writeTimeout
	reasonShutdown                    // the server is shutting down
	reasonLoggedOut                   // its session logged out
)

// told reports whether the client is sent a last "disconnect" event saying
// why (where the connection still takes writes): it should act on these.
func (r disconnectReason) told() bool {
	return r == reasonSlow || r == reasonShutdown || r == reasonLoggedOut
}

func (r disconnectReason) String() string {
	switch r {
	case reasonClientGone:
		return "client-gone"
	case reasonSlow:
		return "slow"
	case reasonStalled:
		return "stalled"
	case reasonShutdown:
		return "shutdown"
	case reasonLoggedOut:
		return "logged-out"
	}
	return "none"
}

var (
	errTooManyStreams = errors.New("this server has too many open streams; try again in a moment")
	errSessionStreams = errors.New("too many open chat windows for this login; close one and reload")
	errHubClosed      = errors.New("the server is shutting down")
)

// disconnectEvent is the last event of a stream the server ends for reason.
func disconnectEvent(reason disconnectReason) *event {
	return controlEvent("disconnect", map[string]string{"reason": reason.String()})
}

// maxStreamsUnlimited is what "no limit" on open streams means: the writer
// pool's run queue is sized to hold every stream.
const maxStreamsUnlimited = 1 << 20

// hubConfig holds the hub's tuning; every field must be set.
type hubConfig struct {
	bufferSize        int           // events queued per subscriber before it is evicted as slow
	maxStreams        int           // open streams per process; 0 = maxStreamsUnlimited
	streamsPerSession int           // open streams per login session; 0 = unlimited
	heartbeat         time.Duration // interval of ": ping" comments
	writeTimeout      time.Duration // a stream whose writes make no progress this long is dropped
	writers           int           // goroutines writing to taken-over connections
}

// hub fans events out to the streams open in this process. Only the hub
// touches the subscriber set. Broadcasting never blocks: each subscriber has
// a bounded queue, and one that is full is evicted (it reconnects and catches
// up from history, so eviction costs it a reconnect, nothing more).
//
// Streams are served two ways. A "goroutine" subscriber is drained by its own
// request goroutine (HTTP/2, or when taking over connections is disabled). A
// "pooled" subscriber owns a connection taken over from net/http after the
// headers; a small pool of writer goroutines serves all of them, which keeps
// an idle stream at a few KiB instead of a goroutine and two bufio buffers.
type hub struct {
	cfg hubConfig
	log *slog.Logger

	mu        sync.RWMutex // guards rooms, sessions, total, closed, degraded
	rooms     map[string][]*subscriber
	sessions  map[string]int // open streams per session ID
	total     int
	closed    bool
	degraded  bool
	runq      chan *subscriber // pooled subscribers with work; each is queued at most once
	stop      chan struct{}    // closed when the hub's goroutines must end
	wg        sync.WaitGroup   // the hub's goroutines
	active    sync.WaitGroup   // open subscribers, for shutdown
	evictions atomic.Int64
	delivered atomic.Int64 // events handed to subscribers' queues
}

func newHub(cfg hubConfig, log *slog.Logger) *hub {
	if cfg.maxStreams == 0 {
		cfg.maxStreams = maxStreamsUnlimited
	}
	h := &hub{
		cfg:      cfg,
		log:      log,
		rooms:    make(map[string][]*subscriber),
		sessions: make(map[string]int),
		// Every subscriber is in runq at most once (its scheduled flag),
		// so with room for all of them a send to runq never blocks.
		runq: make(chan *subscriber, cfg.maxStreams),
		stop: make(chan struct{}),
	}
	for range cfg.writers {
		h.wg.Add(1)
		go h.writer()
	}
	h.wg.Add(1)
	go h.heartbeats()
	return h
}

// subscriber is one open stream. The zero value is not valid: use hub.subscribe.
type subscriber struct {
	hub     *hub
	room    string
	session string
	pooled  bool
	idx     int // position in hub.rooms[room]; guarded by hub.mu

	notify chan struct{} // goroutine subscribers: signalled when the queue becomes non-empty
	done   chan struct{} // closed when the subscriber is closed

	mu        sync.Mutex // guards the fields below
	queue     []*event
	spare     []*event // recycled backing array for queue
	scheduled bool     // pooled: in runq or being written; goroutine: notify was sent
	closed    bool
	reason    disconnectReason
	skipUpTo  streamID // messages up to this ID were already sent by the replay

	// Pooled subscribers only; touched only by the writer that holds scheduled.
	conn    net.Conn
	pending net.Buffers
	stalled time.Time // when the current pending write stopped making progress
}

// subscribe adds a stream to room. pooled subscribers must be given their
// connection with attach before any event can be written.
func (h *hub) subscribe(room, session string, pooled bool) (*subscriber, error) {
	s := &subscriber{
		hub:     h,
		room:    room,
		session: session,
		pooled:  pooled,
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		queue:   make([]*event, 0, 8),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, errHubClosed
	case h.cfg.maxStreams > 0 && h.total >= h.cfg.maxStreams:
		return nil, errTooManyStreams
	case h.cfg.streamsPerSession > 0 && h.sessions[session] >= h.cfg.streamsPerSession &&
		h.liveStreams(room, session) >= h.cfg.streamsPerSession:
		return nil, errSessionStreams
	}
	h.total++
	h.sessions[session]++
	s.idx = len(h.rooms[room])
	h.rooms[room] = append(h.rooms[room], s)
	h.active.Add(1)
	if h.degraded {
		s.queue = append(s.queue, statusEvent(true))
	}
	return s, nil
}

// liveStreams counts session's streams in room that are still open, closing
// those whose peer has gone (a reloaded tab) on the way. The caller holds h.mu.
func (h *hub) liveStreams(room, session string) int {
	n := 0
	for _, s := range h.rooms[room] {
		if s.session != session {
			continue
		}
		s.mu.Lock()
		if !s.closed && s.pooled && s.conn != nil && peerClosed(s.conn) {
			s.closeLocked(reasonClientGone)
		}
		if !s.closed {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// remove takes s out of the subscriber set. It is called exactly once per
// subscriber, by whoever ends it.
func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	subs := h.rooms[s.room]
	last := len(subs) - 1
	subs[s.idx] = subs[last]
	subs[s.idx].idx = s.idx
	subs[last] = nil
	h.rooms[s.room] = subs[:last]
	h.total--
	if h.sessions[s.session]--; h.sessions[s.session] <= 0 {
		delete(h.sessions, s.session)
	}
	h.mu.Unlock()
	h.active.Done()
}

// broadcast queues ev to every stream of room. It never blocks on a stream.
func (h *hub) broadcast(room string, ev *event) {
	var evicted []*subscriber
	h.mu.RLock()
	subs := h.rooms[room]
	for _, s := range subs {
		if !s.offer(ev) {
			evicted = append(evicted, s)
		}
	}
	h.mu.RUnlock()
	h.delivered.Add(int64(len(subs) - len(evicted)))
	for _, s := range evicted {
		h.evictions.Add(1)
		h.log.Info("stream evicted", "reason", reasonSlow, "room", s.room, "buffer", h.cfg.bufferSize)
	}
}

// broadcastAll queues ev to every stream of every room.
func (h *hub) broadcastAll(ev *event) {
	h.mu.RLock()
	rooms := make([]string, 0, len(h.rooms))
	for r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.RUnlock()
	for _, r := range rooms {
		h.broadcast(r, ev)
	}
}

func statusEvent(degraded bool) *event {
	state := "ok"
	if degraded {
		state = "degraded"
	}
	return controlEvent("status", map[string]string{"state": state})
}

// endSession closes every stream of the session sid (it logged out).
func (h *hub) endSession(sid string) {
	h.mu.RLock()
	var ended []*subscriber
	for _, subs := range h.rooms {
		for _, s := range subs {
			if s.session == sid {
				ended = append(ended, s)
			}
		}
	}
	h.mu.RUnlock()
	for _, s := range ended {
		s.close(reasonLoggedOut)
	}
}

// setDegraded records whether delivery through Redis works and tells every
// stream when that changes.
func (h *hub) setDegraded(d bool) {
	h.mu.Lock()
	changed := h.degraded != d
	h.degraded = d
	h.mu.Unlock()
	if changed {
		h.broadcastAll(statusEvent(d))
	}
}

// offer queues ev. It reports false when that made s evicted as slow.
func (s *subscriber) offer(ev *event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	if len(s.queue) >= s.hub.cfg.bufferSize {
		s.closeLocked(reasonSlow)
		return false
	}
	s.queue = append(s.queue, ev)
	s.wakeLocked()
	return true
}

// wakeLocked makes sure someone will drain the queue.
func (s *subscriber) wakeLocked() {
	if s.scheduled {
		return
	}
	s.scheduled = true
	if s.pooled {
		if s.conn != nil { // not attached yet: attach schedules it
			s.hub.runq <- s
		} else {
			s.scheduled = false
		}
		return
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// close ends the stream for reason; the owner finishes it.
func (s *subscriber) close(reason disconnectReason) {
	s.mu.Lock()
	s.closeLocked(reason)
	s.mu.Unlock()
}

func (s *subscriber) closeLocked(reason disconnectReason) {
	if s.closed {
		return
	}
	s.closed = true
	s.reason = reason
	close(s.done)
	s.wakeLocked()
}

// setSkip records that messages up to id were already sent (by the replay).
func (s *subscriber) setSkip(id streamID) {
	s.mu.Lock()
	s.skipUpTo = id
	s.mu.Unlock()
}

// take empties the queue and returns what was in it, without messages the
// replay already sent. The caller gives the slice back with recycle.
func (s *subscriber) take() (evs []*event, closed bool, reason disconnectReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs = s.queue
	if s.spare != nil {
		s.queue, s.spare = s.spare[:0], nil
	} else {
		s.queue = make([]*event, 0, 8)
	}
	if !s.pooled {
		s.scheduled = false
	}
	if !s.skipUpTo.isZero() {
		kept := evs[:0]
		for _, ev := range evs {
			if ev.id.isZero() || ev.id.after(s.skipUpTo) {
				kept = append(kept, ev)
			}
		}
		clear(evs[len(kept):])
		evs = kept
	}
	return evs, s.closed, s.reason
}

func (s *subscriber) recycle(evs []*event) {
	clear(evs)
	s.mu.Lock()
	if s.spare == nil && cap(evs) <= 4*s.hub.cfg.bufferSize {
		s.spare = evs[:0]
	}
	s.mu.Unlock()
}

// attach hands a taken-over connection to the writer pool. Anything queued
// meanwhile is written next.
func (s *subscriber) attach(conn net.Conn) {
	s.mu.Lock()
	s.conn = conn
	s.scheduled = false
	s.wakeLocked()
	s.mu.Unlock()
}

// Pooled writing. A writer takes a subscriber from runq, moves its queue into
// pending and writes it with one writev under a short deadline. A write that
// cannot finish in writeSlice (the peer's socket buffer is full) keeps the
// rest in pending and retries later, so a stalled peer holds a writer for at
// most writeSlice; one that makes no progress for writeTimeout is dropped.
const (
	writeSlice = 20 * time.Millisecond  // longest a writer blocks on one connection
	retryDelay = 100 * time.Millisecond // pause before retrying a full connection
)

func (h *hub) writer() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case s := <-h.runq:
			h.service(s)
		}
	}
}

// service writes what s has queued. The caller holds s's scheduled flag.
func (h *hub) service(s *subscriber) {
	evs, closed, reason := s.take()
	if closed {
		// What is still queued is not written: the client reconnects with
		// its last ID and gets it from history.
		s.recycle(evs)
		h.finishPooled(s, reason)
		return
	}
	if len(evs) == 1 && evs[0] == pingEvent && len(s.pending) == 0 && peerClosed(s.conn) {
		s.recycle(evs)
		s.close(reasonClientGone)
		h.finishPooled(s, reasonClientGone)
		return
	}
	if len(s.pending) == 0 && len(evs) > 0 {
		s.stalled = time.Time{}
	}
	for _, ev := range evs {
		s.pending = append(s.pending, ev.wire)
	}
	s.recycle(evs)
	if len(s.pending) > h.cfg.bufferSize {
		// A peer that takes data, but too slowly, never fills its queue
		// (each retry moves it here): bound pending the same way.
		s.mu.Lock()
		first := !s.closed
		s.closeLocked(reasonSlow)
		s.mu.Unlock()
		if first {
			h.evictions.Add(1)
			h.log.Info("stream evicted", "reason", reasonSlow, "room", s.room, "buffer", h.cfg.bufferSize)
		}
		h.finishPooled(s, reasonSlow)
		return
	}
	if len(s.pending) == 0 {
		h.reschedule(s)
		return
	}
	s.conn.SetWriteDeadline(time.Now().Add(writeSlice))
	_, err := s.pending.WriteTo(s.conn)
	if err == nil {
		s.pending = s.pending[:0]
		h.reschedule(s)
		return
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		s.close(reasonClientGone)
		h.finishPooled(s, reasonClientGone)
		return
	}
	// Partial write: WriteTo consumed what it wrote from s.pending.
	now := time.Now()
	if s.stalled.IsZero() {
		s.stalled = now
	} else if now.Sub(s.stalled) > h.cfg.writeTimeout {
		s.close(reasonStalled)
		h.finishPooled(s, reasonStalled)
		return
	}
	time.AfterFunc(retryDelay, func() { h.runq <- s })
}

// reschedule releases s, or queues it again when more arrived meanwhile.
func (h *hub) reschedule(s *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 || s.closed {
		h.runq <- s
		return
	}
	s.scheduled = false
}

// finishPooled ends a pooled stream: where the connection still takes writes
// and no event is half written, it says why, then closes.
func (h *hub) finishPooled(s *subscriber, reason disconnectReason) {
	if len(s.pending) == 0 && reason.told() {
		s.conn.SetWriteDeadline(time.Now().Add(writeSlice))
		s.conn.Write(disconnectEvent(reason).wire)
	}
	s.conn.Close()
	s.pending = nil
	h.remove(s)
}

// heartbeats pings every stream periodically.
func (h *hub) heartbeats() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.broadcastAll(pingEvent)
		}
	}
}

// shutdown ends every stream and waits (bounded by ctx) until they are gone.
// Browsers reconnect, to another instance behind a load balancer.
func (h *hub) shutdown(ctx context.Context) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	var all []*subscriber
	for _, subs := range h.rooms {
		all = append(all, subs...)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.close(reasonShutdown)
	}
	done := make(chan struct{})
	go func() { h.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.log.Warn("streams still open at shutdown deadline")
	}
	close(h.stop)
	h.wg.Wait()
}

// stats are the hub's counters, for logs, /readyz and the benchmark.
type hubStats struct {
	Streams   int   `json:"streams"`
	Evictions int64 `json:"evictions"`
	Delivered int64 `json:"delivered"`
}

func (h *hub) stats() hubStats {
	h.mu.RLock()
	n := h.total
	h.mu.RUnlock()
	return hubStats{Streams: n, Evictions: h.evictions.Load(), Delivered: h.delivered.Load()}
}
