package chat

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxRoomLen is the longest room name.
const MaxRoomLen = 32

// ValidRoom reports whether s is a room name: 1 to MaxRoomLen of lowercase
// ASCII letters, digits, '-' and '_'. Only such names reach Redis keys and
// channels, so a name can never break out of its key's hash tag.
func ValidRoom(s string) bool {
	if len(s) == 0 || len(s) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CanonicalRoom returns the room name s spells: s itself when valid, its
// lowercase form when only ASCII capitals keep it from being valid (the
// caller redirects there), and ok false otherwise.
func CanonicalRoom(s string) (room string, ok bool) {
	if ValidRoom(s) {
		return s, true
	}
	if len(s) > MaxRoomLen {
		return "", false
	}
	lower := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
	return lower, ValidRoom(lower)
}

// RoomError explains to a person why s is not a room name.
func RoomError(s string) error {
	return fmt.Errorf("%q is not a room name: use 1 to %d lowercase letters, digits, '-' or '_'", clip(s, 40), MaxRoomLen)
}

// SortRooms sorts and dedupes rooms in the order of a composite position:
// the default room first, then by name.
func SortRooms(rooms []string) []string {
	slices.SortFunc(rooms, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == DefaultRoom:
			return -1
		case b == DefaultRoom:
			return 1
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(rooms)
}

// A composite position covers every room of a stream: entries joined by
// ',', each "<room>=<ms>-<seq>", except the default room's, written bare
// ("<ms>-<seq>"), so that a stream of only the default room carries plain
// message IDs, as the tutorial's clients expect. "0-0" is "before the
// first message".
const (
	// MaxPositionRooms and MaxPositionLen bound what a client's position
	// may cost to parse.
	MaxPositionRooms = 64
	MaxPositionLen   = 4096
)

// AppendEntry appends room's entry of a composite position.
func AppendEntry(b []byte, room string, id ID) []byte {
	if room != DefaultRoom {
		b = append(b, room...)
		b = append(b, '=')
	}
	return id.AppendTo(b)
}

// FormatPositions is the composite position of rooms (in SortRooms order)
// at pos; a room missing from pos is at 0-0.
func FormatPositions(rooms []string, pos map[string]ID) string {
	var b []byte
	for i, r := range rooms {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendEntry(b, r, pos[r])
	}
	return string(b)
}

// ErrPosition wraps every ParsePositions failure.
var ErrPosition = errors.New("malformed position")

// ParsePositions parses a composite position (a single plain ID is the
// default room's position, as the previous version sent).
func ParsePositions(s string) (map[string]ID, error) {
	if len(s) > MaxPositionLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrPosition, MaxPositionLen)
	}
	if strings.Count(s, ",") >= MaxPositionRooms {
		return nil, fmt.Errorf("%w: more than %d rooms", ErrPosition, MaxPositionRooms)
	}
	pos := make(map[string]ID)
	for entry := range strings.SplitSeq(s, ",") {
		room, raw, named := strings.Cut(entry, "=")
		if !named {
			room, raw = DefaultRoom, entry
		}
		if !ValidRoom(room) {
			return nil, fmt.Errorf("%w: %q is not a room", ErrPosition, clip(room, 40))
		}
		id, err := ParsePosition(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPosition, err)
		}
		if _, dup := pos[room]; dup {
			return nil, fmt.Errorf("%w: room %q given twice", ErrPosition, room)
		}
		pos[room] = id
	}
	return pos, nil
}
