package fanout

import "chatroom/internal/chat"

// Event is one SSE event, encoded once and shared read-only by every
// subscriber it is queued to: nobody may modify Wire after broadcasting it.
//
// A message event's Wire starts with its single-room id line,
// "id: <entry>\n" (IDLen bytes, entry as AppendEntry writes it), followed by
// the rest of the event. A stream of that one room sends Wire as it is; a
// stream of several rooms replaces the id line with its composite position
// (see Position).
type Event struct {
	ID    chat.ID // zero for events that carry no ID (status, notices, pings)
	Room  string  // the room it belongs to; "" for events of every stream (status, pings)
	IDLen int     // bytes of Wire that are its id line; 0 for events without an ID
	Wire  []byte  // the complete encoding, ending in a blank line
	// Born is when the event's message was published, in Unix
	// nanoseconds on the publisher's clock; 0 for events that are not
	// timed. A write that carries timed events reports its latency
	// (Config.Latency).
	Born int64
}

// earlier is the earlier of born and ev's birth, where 0 is none.
func earlier(born int64, ev *Event) int64 {
	if ev.Born > 0 && (born == 0 || ev.Born < born) {
		return ev.Born
	}
	return born
}

// hasIDLine reports whether Wire starts with an id line that a stream of
// several rooms replaces. An IDLen that leaves no event after the line is
// taken as none, so a malformed event cannot make a writer slice out of
// range or queue an empty write.
func (ev *Event) hasIDLine() bool { return ev.IDLen > 0 && ev.IDLen < len(ev.Wire) }
