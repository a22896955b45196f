package chat

import (
	"encoding/json"
	"fmt"
)

// Signal is an ephemeral event of a room, never stored: someone joined or
// left (presence), or is typing. It travels on the room's channel as
// "<kind-prefix>:<json>" and reaches streams as an event named Kind.
type Signal struct {
	Kind string `json:"kind,omitempty"` // "join", "leave" or "typing"
	Room string `json:"room"`
	User string `json:"user"`
	UID  string `json:"uid"`
}

// Signal kinds.
const (
	SignalJoin   = "join"
	SignalLeave  = "leave"
	SignalTyping = "typing"
)

// DecodeSignal validates a signal read from room's channel: the JSON must
// name this room, a known kind, and a user whose name normalises to itself
// with that uid, so that nothing forged on the channel reaches a page
// beyond what a real user could have caused.
func DecodeSignal(room string, data []byte) (Signal, error) {
	var s Signal
	if len(data) > 1024 {
		return Signal{}, fmt.Errorf("%w: signal of %d bytes", ErrMalformed, len(data))
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return Signal{}, fmt.Errorf("%w: signal: %v", ErrMalformed, err)
	}
	switch {
	case s.Kind != SignalJoin && s.Kind != SignalLeave && s.Kind != SignalTyping:
		return Signal{}, fmt.Errorf("%w: signal kind %q", ErrMalformed, clip(s.Kind, 20))
	case s.Room != room:
		return Signal{}, fmt.Errorf("%w: signal for room %q on the channel of %q", ErrMalformed, clip(s.Room, 40), room)
	}
	name, key, err := CleanName(s.User)
	if err != nil || name != s.User || key != s.UID {
		return Signal{}, fmt.Errorf("%w: signal user %q/%q", ErrMalformed, clip(s.User, 40), clip(s.UID, 40))
	}
	return s, nil
}
