package fanout

import "chatroom/internal/chat"

// Event is one SSE event, encoded once and shared read-only by every
// subscriber it is queued to: nobody may modify Wire after broadcasting it.
type Event struct {
	ID   chat.ID // zero for events that carry no ID (status, notices, pings)
	Wire []byte  // the complete encoding, ending in a blank line
}
