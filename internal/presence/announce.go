package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// PayloadPrefix starts every presence announcement on a room's channel
// (message payloads start with a digit, so the two cannot be confused).
const PayloadPrefix = "presence:"

// Announcement kinds.
const (
	KindJoin  = "join"
	KindLeave = "leave"
)

// Announcement is a join or a leave as published on a room's channel:
// PayloadPrefix + {"kind":"join"|"leave","room":R,"user":name,"uid":uid}.
type Announcement struct {
	Kind string `json:"kind"`
	Room string `json:"room"`
	User string `json:"user"`
	UID  string `json:"uid"`
}

// maxPayload bounds an announcement payload: a room, a name and a uid,
// JSON-escaped, with room to spare.
const maxPayload = 4096

var errNotPresence = errors.New("not a presence payload")

// ParseAnnouncement reads a payload received on a room's channel. Redis is
// outside the process, so the payload is validated like a request body: the
// prefix, the JSON, a known kind, a valid room, a valid uid and a name.
func ParseAnnouncement(payload string) (Announcement, error) {
	body, ok := strings.CutPrefix(payload, PayloadPrefix)
	if !ok {
		return Announcement{}, errNotPresence
	}
	if len(payload) > maxPayload || !utf8.ValidString(body) {
		return Announcement{}, fmt.Errorf("presence payload: too long or not UTF-8")
	}
	var a Announcement
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return Announcement{}, fmt.Errorf("presence payload: %w", err)
	}
	switch {
	case a.Kind != KindJoin && a.Kind != KindLeave:
		return Announcement{}, fmt.Errorf("presence payload: unknown kind %q", a.Kind)
	case !validRoom(a.Room):
		return Announcement{}, fmt.Errorf("presence payload: invalid room %q", a.Room)
	case !validUID(a.UID):
		return Announcement{}, fmt.Errorf("presence payload: invalid uid %q", a.UID)
	case a.User == "":
		return Announcement{}, errors.New("presence payload: no user name")
	}
	return a, nil
}
