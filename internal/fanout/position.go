package fanout

import (
	"cmp"
	"slices"

	"chatroom/internal/chat"
)

// Position is where a stream's client is in each room of the stream: the
// newest message of every room it was sent. It is what the stream's SSE id
// says, so that a reconnecting client resumes every room where it left off.
//
// Its text form (String, and every id line of a stream of several rooms)
// is the composite position: one entry per room, comma-separated, the
// default room first and the others by name, as AppendEntry writes them,
// e.g. "1733050000000-0,dev=1733050001234-1,ops=0-0". A stream of one room
// has that room's entry alone, which is the id line its message events
// already carry, so its events are sent as they are.
//
// A Position is used by one goroutine at a time: the request goroutine
// that writes a stream's replay, then (Subscriber.SetPosition) the stream's
// writer. The zero value is a position of no room.
type Position struct {
	rooms []string  // sorted by compareRooms, no duplicates
	ids   []chat.ID // ids[i]: the newest message of rooms[i] sent; zero before the first
	line  []byte    // Wire's id line, reused
	parts [2][]byte // Wire's result, reused
}

// NewPosition returns the position of a stream of rooms (in any order;
// duplicates count once) whose client has start[room] of each room. A room
// missing from start is at its zero ID ("0-0": before its first message);
// entries of start for other rooms are ignored.
func NewPosition(rooms []string, start map[string]chat.ID) *Position {
	return newPosition(sortRooms(rooms), start)
}

// newPosition is NewPosition for rooms already sorted by sortRooms, which
// it keeps.
func newPosition(rooms []string, start map[string]chat.ID) *Position {
	p := &Position{rooms: rooms, ids: make([]chat.ID, len(rooms))}
	for i, room := range rooms {
		p.ids[i] = start[room]
	}
	return p
}

// multi reports whether p has several rooms, so that message events need
// their id line replaced.
func (p *Position) multi() bool { return len(p.rooms) > 1 }

// Wire returns what to write for ev, in order, and records that it is
// sent: for a stream of one room, or an event without an ID, ev.Wire as it
// is; for a message event on a stream of several rooms, the id line of the
// composite position after ev, then the rest of ev.Wire. The slices are
// valid until the next call of a method of p and must not be modified.
//
// ev must be of one of p's rooms, or of none. A message of another room
// leaves the position as it is (on a stream of several rooms it goes out
// under the unchanged composite), but the hub never queues one.
func (p *Position) Wire(ev *Event) [][]byte {
	if !p.multi() || !ev.hasIDLine() {
		p.advance(ev)
		p.parts = [2][]byte{ev.Wire}
		return p.parts[:1]
	}
	p.line = p.appendIDLine(p.line[:0], ev)
	p.parts = [2][]byte{p.line, ev.Wire[ev.IDLen:]}
	return p.parts[:2]
}

// AppendWire appends what Wire returns for ev to dst and returns the
// extended buffer, as a replay writes a page of events.
func (p *Position) AppendWire(dst []byte, ev *Event) []byte {
	if !p.multi() || !ev.hasIDLine() {
		p.advance(ev)
		return append(dst, ev.Wire...)
	}
	dst = p.appendIDLine(dst, ev)
	return append(dst, ev.Wire[ev.IDLen:]...)
}

// String is the composite position, e.g. "1733050000000-0,dev=0-0"; "" for
// a position of no room.
func (p *Position) String() string {
	return string(p.appendComposite(nil))
}

// appendIDLine records ev and appends "id: <composite>\n".
func (p *Position) appendIDLine(dst []byte, ev *Event) []byte {
	p.advance(ev)
	dst = append(dst, "id: "...)
	dst = p.appendComposite(dst)
	return append(dst, '\n')
}

// advance records that the client was sent ev: the newest message of its
// room, if it has an ID.
func (p *Position) advance(ev *Event) {
	if ev.ID.IsZero() {
		return
	}
	if i, ok := roomIndex(p.rooms, ev.Room); ok {
		p.ids[i] = ev.ID
	}
}

func (p *Position) appendComposite(dst []byte) []byte {
	for i, room := range p.rooms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendEntry(dst, room, p.ids[i])
	}
	return dst
}

// AppendEntry appends room's entry of a position at id to dst: "<ms>-<seq>"
// for the default room (chat.DefaultRoom), "<room>=<ms>-<seq>" for any
// other; the zero ID is "0-0". A message event's single-room id line is
// "id: " + its entry + "\n".
func AppendEntry(dst []byte, room string, id chat.ID) []byte {
	if room != chat.DefaultRoom {
		dst = append(dst, room...)
		dst = append(dst, '=')
	}
	return id.AppendTo(dst)
}

// compareRooms orders rooms as a position lists them: the default room
// first, then by name.
func compareRooms(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == chat.DefaultRoom:
		return -1
	case b == chat.DefaultRoom:
		return 1
	}
	return cmp.Compare(a, b)
}

// sortRooms returns a sorted copy of rooms without duplicates.
func sortRooms(rooms []string) []string {
	sorted := slices.Clone(rooms)
	slices.SortFunc(sorted, compareRooms)
	return slices.Compact(sorted)
}

// roomIndex finds room in rooms, sorted by compareRooms.
func roomIndex(rooms []string, room string) (int, bool) {
	if len(rooms) == 1 { // the common case, without a call
		return 0, rooms[0] == room
	}
	return slices.BinarySearchFunc(rooms, room, compareRooms)
}
