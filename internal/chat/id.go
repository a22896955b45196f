// Package chat is the domain of the chat server: message IDs and positions,
// messages and their validation, user names.
package chat

import (
	"fmt"
	"strconv"
	"strings"
)

// ID is a Redis stream entry ID ("<ms>-<seq>"). It is a message's ID on the
// wire (the SSE "id:" field) and orders messages: a larger ID is newer.
// The zero value means "no ID" (Redis never issues 0-0).
type ID struct {
	Ms, Seq uint64
}

// maxIDLen is the longest text form of an ID: two 20-digit numbers and "-".
const maxIDLen = 41

// ParseID parses "<ms>-<seq>". It rejects anything else, including
// surrounding spaces, signs and "0-0", so a client cannot smuggle text into
// a Redis range.
func ParseID(s string) (ID, error) {
	id, err := parseID(s)
	if err == nil && id.IsZero() {
		err = fmt.Errorf("malformed message ID %q", s)
	}
	return id, err
}

// ParsePosition parses a stream position: a message ID, or "0-0" for "before
// the first message" (a page rendered while the history was empty).
func ParsePosition(s string) (ID, error) { return parseID(s) }

func parseID(s string) (ID, error) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok || !digits(msPart) || !digits(seqPart) || len(s) > maxIDLen {
		return ID{}, fmt.Errorf("malformed message ID %q", clip(s, 64))
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if err1 != nil || err2 != nil {
		return ID{}, fmt.Errorf("malformed message ID %q", clip(s, 64))
	}
	return ID{ms, seq}, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String is the Redis form "<ms>-<seq>"; "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return string(id.AppendTo(make([]byte, 0, 24)))
}

// AppendTo appends the ID's text form to b without allocating.
func (id ID) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.Ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// IsZero reports whether id is "no ID".
func (id ID) IsZero() bool { return id == ID{} }

// After reports whether id is newer than other.
func (id ID) After(other ID) bool {
	return id.Ms > other.Ms || (id.Ms == other.Ms && id.Seq > other.Seq)
}

// clip shortens s to at most n bytes for error messages and logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
