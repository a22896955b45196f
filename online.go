package main

import (
	"context"
	"sync"
	"time"

	"chatroom/internal/presence"
)

// onlineReads batches reads of a room's online list: at most one read per
// room runs at a time, and every caller that arrives while one runs waits
// for the next one, which starts when the running one ends and serves them
// all. A caller is always answered by a read that started after it asked
// (a stream asks after subscribing, so any change after its answer reaches
// it as a join or leave event), yet a storm of stream opens in one room
// costs a read per read-time instead of one per stream (the list costs
// Redis O(people in the room)).
type onlineReads struct {
	p       presenceTracker
	timeout time.Duration

	mu    sync.Mutex
	rooms map[string]*roomReads
}

type roomReads struct {
	running bool
	next    *onlineRead // the read the next callers wait for; nil when none is waiting
}

type onlineRead struct {
	waiters int // callers answered by it (guarded by onlineReads.mu)
	done    chan struct{}
	users   []presence.Member
	n       int
	err     error
}

func newOnlineReads(p presenceTracker, timeout time.Duration) *onlineReads {
	return &onlineReads{p: p, timeout: timeout, rooms: make(map[string]*roomReads)}
}

// Online returns room's online list, as presence.Online does.
func (o *onlineReads) Online(ctx context.Context, room string) ([]presence.Member, int, error) {
	o.mu.Lock()
	rr := o.rooms[room]
	if rr == nil {
		rr = &roomReads{}
		o.rooms[room] = rr
	}
	if rr.next == nil {
		rr.next = &onlineRead{done: make(chan struct{})}
	}
	rd := rr.next
	rd.waiters++
	if !rr.running {
		o.startLocked(room, rr)
	}
	o.mu.Unlock()
	select {
	case <-rd.done:
		return rd.users, rd.n, rd.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// startLocked runs rr.next; o.mu is held.
func (o *onlineReads) startLocked(room string, rr *roomReads) {
	rd := rr.next
	rr.next = nil
	rr.running = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		rd.users, rd.n, rd.err = o.p.Online(ctx, room)
		cancel()
		close(rd.done)
		o.mu.Lock()
		rr.running = false
		if rr.next != nil {
			o.startLocked(room, rr)
		} else {
			delete(o.rooms, room)
		}
		o.mu.Unlock()
	}()
}
