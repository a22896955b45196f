package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultRoom is the tutorial's one room; its Redis pub/sub channel is
// literally "chat".
const DefaultRoom = "chat"

// Message is one chat message as sent to browsers. In history and on the
// pub/sub channel it is stored as its Body; ID and Seq are Redis's.
type Message struct {
	ID   string    `json:"id"`
	Room string    `json:"room"`
	Seq  uint64    `json:"seq,omitempty"` // the room's sequence number: consecutive, so a gap is visible
	User string    `json:"user"`          // display name, as the user typed it (normalised)
	UID  string    `json:"uid"`           // canonical name: equal for names that look alike
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// body is the stored form: what the publisher knows before Redis assigns
// the ID and the sequence number.
type body struct {
	User string    `json:"user"`
	UID  string    `json:"uid"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// Limits on what a stored body may hold. They are above anything the server
// accepts from a user (names of 32 characters, messages of a few thousand),
// so only a foreign or broken writer hits them.
const (
	MaxBodyBytes  = 64 << 10
	maxStoredName = 256
)

// Body returns the message's stored form, JSON without ID, room and sequence.
func (m Message) Body() ([]byte, error) {
	b, err := json.Marshal(body{User: m.User, UID: m.UID, Text: m.Text, Time: m.Time})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b, nil
}

// ErrMalformed marks a stored or published message that does not hold a
// valid chat message: a foreign writer, an older version, a typo in
// redis-cli. Such an entry is skipped and counted, never delivered.
var ErrMalformed = errors.New("malformed message")

// DecodeStored validates a stored body and returns the message with its
// room, ID and sequence number. Everything read from Redis goes through it:
// history entries and published payloads are input like a request body.
func DecodeStored(room string, id ID, seq uint64, raw []byte) (Message, error) {
	if id.IsZero() {
		return Message{}, fmt.Errorf("%w: no ID", ErrMalformed)
	}
	if len(raw) == 0 || len(raw) > MaxBodyBytes {
		return Message{}, fmt.Errorf("%w %s: body of %d bytes", ErrMalformed, id, len(raw))
	}
	var b body
	if err := json.Unmarshal(raw, &b); err != nil {
		return Message{}, fmt.Errorf("%w %s: %v", ErrMalformed, id, err)
	}
	switch {
	case b.User == "" || b.UID == "" || len(b.User) > maxStoredName || len(b.UID) > maxStoredName:
		return Message{}, fmt.Errorf("%w %s: no valid sender", ErrMalformed, id)
	case b.Text == "":
		return Message{}, fmt.Errorf("%w %s: no text", ErrMalformed, id)
	case b.Time.IsZero():
		return Message{}, fmt.Errorf("%w %s: no time", ErrMalformed, id)
	case !utf8.ValidString(b.User + b.UID + b.Text):
		// encoding/json replaces invalid bytes, so this only guards changes.
		return Message{}, fmt.Errorf("%w %s: not UTF-8", ErrMalformed, id)
	}
	return Message{ID: id.String(), Room: room, Seq: seq, User: b.User, UID: b.UID, Text: b.Text, Time: b.Time}, nil
}

// InputError is a problem with what a client sent: it carries the HTTP
// status to answer with and a message meant for people.
type InputError struct {
	Status int
	Msg    string
}

func (e *InputError) Error() string { return e.Msg }

// BadInput returns an *InputError.
func BadInput(status int, format string, args ...any) error {
	return &InputError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// ErrEmptyMessage is wrapped by CleanMessage's error for an empty text.
var ErrEmptyMessage = errors.New("message is empty")

// CleanMessage validates and normalises a message text: valid UTF-8, line
// breaks normalised to "\n", trimmed, 1..max characters, no control
// characters other than newlines. Errors are *InputError (400, or 413 when
// too long).
func CleanMessage(raw string, max int) (string, error) {
	if !utf8.ValidString(raw) {
		return "", BadInput(400, "message is not valid UTF-8 text")
	}
	text := strings.ReplaceAll(raw, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.TrimSpace(text)
	if text == "" {
		return "", BadInput(400, "%v: type something before sending", ErrEmptyMessage)
	}
	marks := 0     // combining marks in a row
	flagTags := -1 // tag characters after a black flag (U+1F3F4); -1: not after one
	badTag := func(r rune) error {
		return BadInput(400, "message contains an invisible tag character (U+%04X)", r)
	}
	for _, r := range text {
		if r != '\n' && (unicode.IsControl(r) || IsBidiControl(r)) {
			return "", BadInput(400, "message contains a control character (U+%04X); only text and line breaks are allowed", r)
		}
		// Tags are refused, except in the flag emoji of a region
		// (U+1F3F4, 2–6 tag letters or digits, U+E007F: 🏴 of England).
		switch {
		case IsTag(r) && flagTags >= 0 && r == 0xE007F && flagTags >= 2:
			flagTags = -1
			continue
		case IsTag(r) && flagTags >= 0 && flagTags < 6 && (r >= 0xE0030 && r <= 0xE0039 || r >= 0xE0061 && r <= 0xE007A):
			flagTags++
			continue
		case IsTag(r):
			return "", badTag(r)
		case flagTags > 0:
			return "", BadInput(400, "message contains invisible tag characters that do not end as a flag")
		}
		flagTags = -1
		if r == 0x1F3F4 {
			flagTags = 0
		}
		if unicode.In(r, unicode.Mn, unicode.Me) {
			if marks++; marks > MaxCombiningRun {
				return "", BadInput(400, "message stacks more than %d combining marks on one character", MaxCombiningRun)
			}
		} else {
			marks = 0
		}
	}
	if flagTags > 0 {
		return "", BadInput(400, "message contains invisible tag characters that do not end as a flag")
	}
	if n := utf8.RuneCountInString(text); n > max {
		return "", BadInput(413, "message is too long: %d characters, the limit is %d", n, max)
	}
	return text, nil
}

// MaxCombiningRun is the most combining marks (Unicode Mn, Me) a message
// may stack on one character: enough for any script's writing (Vietnamese,
// Hebrew with cantillation, Indic scripts use up to about four), too few to
// draw over the lines around ("Zalgo" text stacks dozens).
const MaxCombiningRun = 6

// IsTag reports the invisible tag characters U+E0000–U+E007F, which can
// smuggle hidden text (an instruction for a program reading the chat)
// past a reader.
func IsTag(r rune) bool { return r >= 0xE0000 && r <= 0xE007F }

// IsBidiControl reports the explicit bidirectional formatting characters that
// can make text display in a different order than it is stored ("Trojan
// Source"): embeddings, overrides and isolates.
func IsBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
