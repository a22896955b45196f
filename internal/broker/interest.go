package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"chatroom/internal/chat"
)

// Subscriptions follow local interest: the process's subscription listens
// to the channel of a room only while some local stream wants it (plus a
// linger, so that a reload does not unsubscribe and subscribe again). The
// stream handler Acquires its rooms before it subscribes to the hub and
// reads the history position it replays up to, and releases them when the
// stream ends.
//
// Why that order is lossless: a room new to this process starts at the
// newest history entry read in Acquire, before the stream read its own; the
// subscription fills from that position once its SUBSCRIBE is confirmed. So
// whatever is published after Acquire is delivered to the hub, and whatever
// the hub got before the stream registered is older than the stream's own
// newest, which its replay covers.

// interest is a room's entry in the interest table (guarded by Broker.mu).
type interest struct {
	refs      int       // local holders (streams)
	idleSince time.Time // when refs last dropped to 0
}

// pendingRoom is a room new to the table, with the position its delivery
// starts from, waiting for the Run goroutine.
type pendingRoom struct {
	room string
	pos  position
}

// Lease is local interest in some rooms, taken by Acquire. Release drops
// it; only its first call counts, and it never blocks.
type Lease struct {
	b     *Broker
	rooms []string
	done  atomic.Bool
}

// Release drops the lease's interest in its rooms.
func (l *Lease) Release() {
	if l == nil || l.done.Swap(true) {
		return
	}
	l.b.drop(l.rooms)
}

// Rooms are the lease's rooms.
func (l *Lease) Rooms() []string { return l.rooms }

// drop takes one reference from each of rooms.
func (b *Broker) drop(rooms []string) {
	b.mu.Lock()
	now := time.Now()
	for _, r := range rooms {
		if in := b.table[r]; in != nil {
			in.refs--
			if in.refs == 0 {
				in.idleSince = now
			}
		}
	}
	b.mu.Unlock()
}

// Acquire registers local interest in rooms (the lease keeps the slice) and
// returns the lease that drops it. It blocks only to read the newest
// history position of a room this process does not listen to yet.
func (b *Broker) Acquire(ctx context.Context, rooms ...string) (*Lease, error) {
	for i, room := range rooms {
		if !chat.ValidRoom(room) {
			b.drop(rooms[:i])
			return nil, fmt.Errorf("acquire: %w", chat.RoomError(room))
		}
		if b.hold(room) {
			continue
		}
		p, err := b.newest(ctx, room)
		if err != nil {
			b.drop(rooms[:i])
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		b.mu.Lock()
		if in := b.table[room]; in != nil { // another stream got there first
			in.refs++
		} else {
			b.table[room] = &interest{refs: 1}
			b.pending = append(b.pending, pendingRoom{room, p})
		}
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return &Lease{b: b, rooms: rooms}, nil
}

// hold takes one more reference to room if it is in the table.
func (b *Broker) hold(room string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if in := b.table[room]; in != nil {
		in.refs++
		return true
	}
	return false
}

// Rooms returns the rooms this process listens to (local interest or
// lingering), for stats and tests.
func (b *Broker) Rooms() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.table)
}

// takePending returns the rooms added since the last call.
func (b *Broker) takePending() []pendingRoom {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	b.pending = nil
	return p
}

// expired removes from the table the rooms nobody held for the linger and
// returns them.
func (b *Broker) expired(now time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for r, in := range b.table {
		if in.refs == 0 && now.Sub(in.idleSince) >= b.cfg.Linger {
			delete(b.table, r)
			out = append(out, r)
		}
	}
	return out
}

// wanted reports whether room is in the table.
func (b *Broker) wanted(room string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.table[room] != nil
}
