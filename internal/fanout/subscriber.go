package fanout

import (
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chatroom/internal/chat"
)

// Mode says who writes a subscriber's events to its client.
type Mode int

// The ways a stream is served.
const (
	Goroutine Mode = iota // the HTTP handler's goroutine, in Subscriber.Serve
	Pooled                // the hub's shared writers, on a connection given to Subscriber.Attach
	numModes
)

// String is the mode's name in logs and stats.
func (m Mode) String() string {
	if m == Pooled {
		return "pooled"
	}
	return "goroutine"
}

// writeState says who may write a pooled subscriber's connection: the
// holder of its write token, if any.
type writeState int

const (
	idle      writeState = iota // nobody: the next event schedules it
	scheduled                   // in the run queue, or being serviced by a shared writer
	draining                    // its own goroutine, waiting for a full socket (drain.go)
)

// Subscriber is one open stream. The zero value is not valid: use
// Hub.Subscribe.
type Subscriber struct {
	hub     *Hub
	rooms   []string // sorted by compareRooms, no duplicates
	session string
	mode    Mode
	release func() // called once it left the registry (Hub.remove); may be nil
	opened  time.Time
	// replayed counts what the handler wrote before Attach or Serve
	// (NoteReplayed), for Closed.
	replayed atomic.Int64

	done   chan struct{} // closed when the stream ends (closed is set)
	notify chan struct{} // Goroutine mode: an event or the end is waiting; buffered 1

	// Guarded by hub.mu.
	roomIdx    []int // roomIdx[i]: position in the registry's list of rooms[i]
	sessionIdx int   // position in the registry's session list
	allIdx     int   // position in the registry's list of all streams
	removed    bool  // taken out of the registry

	mu      sync.Mutex // guards the fields up to armMu
	q       queue
	closed  bool
	reason  Reason
	serving bool            // Goroutine mode: Serve was called
	state   writeState      // Pooled mode
	conn    net.Conn        // Pooled mode: set once by Attach; the write-token holder reads it without mu
	rc      syscall.RawConn // conn's file descriptor, likewise

	// armMu guards target and is held while its write deadline is set, so
	// that an interrupt (a deadline in the past, set when the stream is
	// closed) is never overwritten by a later arm, and never lands on a
	// writer the stream has let go of (an http.ResponseWriter after its
	// handler returned). Where both are held, mu is taken first.
	armMu  sync.Mutex
	target interface{ SetWriteDeadline(time.Time) error }

	// Owned by the stream's writer (the holder of the write token, or
	// Serve), and before Attach or Serve by the request goroutine.
	pos *Position // what its composite id lines say; may be nil on a stream of one room

	// Pooled mode: owned by the holder of the write token.
	pending pending
}

// newSubscriber makes a subscriber of rooms, sorted by sortRooms.
func newSubscriber(h *Hub, rooms []string, session string, mode Mode, release func()) *Subscriber {
	s := &Subscriber{
		hub:     h,
		rooms:   rooms,
		session: session,
		mode:    mode,
		release: release,
		opened:  time.Now(),
		roomIdx: make([]int, len(rooms)),
		done:    make(chan struct{}),
		notify:  make(chan struct{}, 1),
	}
	if len(rooms) > 1 { // a stream of one room writes its events as they are
		s.pos = newPosition(rooms, nil)
	}
	return s
}

// NoteReplayed records that the stream's handler wrote n events itself
// (a replay, before Attach or Serve): they count in its Closed summary.
func (s *Subscriber) NoteReplayed(n int) { s.replayed.Add(int64(n)) }

// summary is s's Closed, once it ended.
func (s *Subscriber) summary() Closed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Closed{Rooms: s.rooms, Mode: s.mode, Reason: s.reason, Duration: time.Since(s.opened),
		Events: s.q.sentEvents, Bytes: s.q.sentBytes, Replayed: s.replayed.Load()}
}

// Done is closed when the stream has ended, for whatever reason.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// SkipUpTo drops the queued events of room, and those broadcast later,
// whose non-zero ID is not after id: a replay of room already sent them.
// Events of other rooms, and events without an ID, are kept. A room not on
// the stream is ignored. Call it, for each room replayed, before Attach or
// Serve.
func (s *Subscriber) SkipUpTo(room string, id chat.ID) {
	if _, ok := roomIndex(s.rooms, room); !ok {
		return
	}
	s.mu.Lock()
	s.q.skipUpTo(room, id)
	s.mu.Unlock()
}

// SetPosition gives the stream the position its replay brought the client
// to: the request goroutine writes the replay with p (Position.Wire or
// AppendWire), then hands p over, and the stream's writer goes on from
// there. Call it before Attach or Serve; afterwards it is an error, logged
// and ignored. Without it, a stream starts at NewPosition(rooms, nil).
//
// p should be a position of the stream's rooms. If it is not, the error is
// logged and the stream takes p's entries of its own rooms.
func (s *Subscriber) SetPosition(p *Position) {
	if p == nil {
		return
	}
	if !slices.Equal(p.rooms, s.rooms) {
		s.hub.log.Error("fanout: SetPosition of other rooms than the stream's",
			"rooms", strings.Join(s.rooms, ","), "position", p.String())
		start := make(map[string]chat.ID, len(p.rooms))
		for i, room := range p.rooms {
			start[room] = p.ids[i]
		}
		p = newPosition(s.rooms, start)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving || s.conn != nil {
		s.hub.log.Error("fanout: SetPosition after Attach or Serve", "rooms", strings.Join(s.rooms, ","))
		return
	}
	s.pos = p
}

// Cancel ends a subscriber that was never attached or served (its replay
// failed, say) and removes it from the hub. Once Attach or Serve has been
// called, Cancel only ends the stream (ReasonNone, nothing told) and its
// writer removes it.
func (s *Subscriber) Cancel() {
	s.close(ReasonNone)
	s.mu.Lock()
	owned := s.serving || s.conn != nil
	s.mu.Unlock()
	if !owned {
		s.hub.remove(s)
	}
}

// offer queues ev for s; Broadcast holds hub.mu (read).
func (s *Subscriber) offer(ev *Event) admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return skipped
	}
	a := s.q.admit(ev, s.hub.cfg.QueueEvents, s.hub.cfg.QueueBytes)
	switch a {
	case admitted:
		s.wakeLocked()
	case overflow:
		s.closeLocked(ReasonSlow)
	}
	return a
}

// wakeLocked makes sure whoever writes s's events looks at it.
func (s *Subscriber) wakeLocked() {
	if s.mode == Goroutine {
		select {
		case s.notify <- struct{}{}:
		default: // a wake-up is already pending
		}
		return
	}
	if s.state == idle && s.rc != nil { // before Attach, Attach schedules it
		s.state = scheduled
		s.hub.runq.push(s)
	}
}

// close ends the stream for reason, unless it already ended, and interrupts
// a write that is waiting on the client. Its writer finishes it.
func (s *Subscriber) close(reason Reason) {
	s.mu.Lock()
	first := s.closeLocked(reason)
	s.mu.Unlock()
	if first {
		s.interrupt()
	}
}

// closeLocked ends the stream and reports whether this call ended it. The
// caller must then call interrupt once it has released its locks, unless it
// is s's writer itself.
func (s *Subscriber) closeLocked(reason Reason) bool {
	if s.closed {
		return false
	}
	s.closed = true
	s.reason = reason
	close(s.done)
	s.hub.closes[reason].Add(1)
	s.wakeLocked()
	return true
}

// setTarget names the writer whose deadline arm sets and interrupt cuts.
func (s *Subscriber) setTarget(t interface{ SetWriteDeadline(time.Time) error }) {
	s.armMu.Lock()
	s.target = t
	s.armMu.Unlock()
}

// arm gives the next write timeout to complete, unless the stream has ended.
func (s *Subscriber) arm(timeout time.Duration) bool {
	s.armMu.Lock()
	defer s.armMu.Unlock()
	select {
	case <-s.done:
		return false
	default:
	}
	s.target.SetWriteDeadline(time.Now().Add(timeout))
	return true
}

// interrupt makes a write that is waiting on the client give up, so that
// ending a stream never waits for a client that does not read.
func (s *Subscriber) interrupt() {
	s.armMu.Lock()
	if s.target != nil {
		s.target.SetWriteDeadline(time.Unix(1, 0)) // long past: a waiting write returns at once
	}
	s.armMu.Unlock()
}

// wrote records that events taken from the queue were written.
func (s *Subscriber) wrote(events, bytes int) {
	if events == 0 && bytes == 0 {
		return
	}
	s.mu.Lock()
	s.q.wrote(events, bytes)
	s.mu.Unlock()
}
