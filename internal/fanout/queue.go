package fanout

import (
	"slices"

	"chatroom/internal/chat"
)

// queue is one subscriber's backlog: the events it accepted and has not yet
// written to its client, bounded in events and in bytes. Events leave evs
// when a writer takes them, but stay counted until wrote reports them
// written, so a write that is stuck halfway still counts against the
// bounds. The zero value is an empty queue. Guarded by Subscriber.mu.
type queue struct {
	evs    []*Event   // accepted and not yet taken by a writer, oldest first
	events int        // accepted and not yet written: len(evs) plus taken, unwritten events
	bytes  int        // likewise in bytes (see pending.add for events of several rooms)
	skip   []skipMark // by room, sorted by compareRooms: at most one per room of the stream

	sentEvents, sentBytes int64 // written so far, for the stream's summary (Closed)
}

// skipMark says that the events of room with a non-zero ID up to id are
// dropped: a replay of that room sent them.
type skipMark struct {
	room string
	id   chat.ID
}

// admission is what queue.admit did with an event.
type admission int

const (
	admitted admission = iota
	skipped            // a replay already sent it
	overflow           // it would exceed a bound: the subscriber is too slow
)

// admit queues ev unless it is empty, the replay covered it, or it would
// take the backlog over maxEvents or maxBytes. An empty backlog takes one
// event of any size, so a single large event cannot evict every subscriber.
func (q *queue) admit(ev *Event, maxEvents, maxBytes int) admission {
	if len(ev.Wire) == 0 || q.covered(ev) {
		return skipped
	}
	if q.events > 0 && (q.events+1 > maxEvents || q.bytes+len(ev.Wire) > maxBytes) {
		return overflow
	}
	q.evs = append(q.evs, ev)
	q.events++
	q.bytes += len(ev.Wire)
	return admitted
}

// covered reports whether a replay of ev's room sent ev.
func (q *queue) covered(ev *Event) bool {
	if ev.ID.IsZero() || len(q.skip) == 0 {
		return false
	}
	if len(q.skip) == 1 { // the common case, without a search
		return q.skip[0].room == ev.Room && !ev.ID.After(q.skip[0].id)
	}
	i, ok := q.skipIndex(ev.Room)
	return ok && !ev.ID.After(q.skip[i].id)
}

// skipIndex finds room's mark, or where it goes.
func (q *queue) skipIndex(room string) (int, bool) {
	return slices.BinarySearchFunc(q.skip, room, func(m skipMark, room string) int {
		return compareRooms(m.room, room)
	})
}

// skipUpTo drops the queued events of room with a non-zero ID up to id,
// and those admitted later; other rooms' events are kept.
func (q *queue) skipUpTo(room string, id chat.ID) {
	i, ok := q.skipIndex(room)
	switch {
	case ok && !id.After(q.skip[i].id), !ok && id.IsZero():
		return
	case ok:
		q.skip[i].id = id
	default:
		q.skip = slices.Insert(q.skip, i, skipMark{room, id})
	}
	kept := q.evs[:0]
	for _, ev := range q.evs {
		if q.covered(ev) {
			q.events--
			q.bytes -= len(ev.Wire)
			continue
		}
		kept = append(kept, ev)
	}
	clear(q.evs[len(kept):])
	q.evs = kept
}

// take appends the queued events to dst and empties evs. They stay counted
// until wrote.
func (q *queue) take(dst []*Event) []*Event {
	dst = append(dst, q.evs...)
	clear(q.evs)
	q.evs = q.evs[:0]
	if cap(q.evs) > keepCap {
		q.evs = nil
	}
	return dst
}

// wrote records that events taken earlier were written: events of them
// completely, bytes in all (including part of an event still being written).
func (q *queue) wrote(events, bytes int) {
	q.events -= events
	q.bytes -= bytes
	q.sentEvents += int64(events)
	q.sentBytes += int64(bytes)
}

// reset forgets everything: the stream ended, and what it had not written
// is not written (the client resumes from history).
func (q *queue) reset() {
	clear(q.evs)
	q.evs = nil
	q.events, q.bytes = 0, 0
}
