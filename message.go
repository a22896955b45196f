package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// streamID is a Redis stream entry ID ("<ms>-<seq>"). It is the message ID on
// the wire (the SSE "id:" field) and orders messages: a larger ID is newer.
// The zero value means "no ID".
type streamID struct {
	ms, seq uint64
}

// parseStreamID parses "<ms>-<seq>". It rejects anything else, including
// surrounding spaces and "0-0" (the zero value, which is no message), so a
// client cannot smuggle text into a Redis range.
func parseStreamID(s string) (streamID, error) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok || msPart == "" || seqPart == "" || len(s) > 41 {
		return streamID{}, fmt.Errorf("malformed message ID %q", truncate(s, 64))
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if err1 != nil || err2 != nil || (ms == 0 && seq == 0) { // Redis never issues 0-0
		return streamID{}, fmt.Errorf("malformed message ID %q", truncate(s, 64))
	}
	return streamID{ms, seq}, nil
}

func (id streamID) String() string {
	if id.isZero() {
		return ""
	}
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

// appendTo appends the ID's text form to b without allocating.
func (id streamID) appendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.seq, 10)
}

func (id streamID) isZero() bool { return id == streamID{} }

// after reports whether id is newer than other.
func (id streamID) after(other streamID) bool {
	return id.ms > other.ms || (id.ms == other.ms && id.seq > other.seq)
}

// Message is one chat message as stored in history and sent to browsers.
type Message struct {
	ID   string    `json:"id,omitempty"`
	User string    `json:"user"` // display name, as the user typed it (normalised)
	UID  string    `json:"uid"`  // canonical name: equal for names that look alike
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// encodeBody returns the message's JSON without its ID: the form kept in the
// history stream and published, since the ID is only known once Redis stored it.
func (m Message) encodeBody() ([]byte, error) {
	m.ID = ""
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b, nil
}

// decodeMessage parses a stored body and attaches its ID.
func decodeMessage(id string, body []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return Message{}, fmt.Errorf("decode message %s: %w", id, err)
	}
	m.ID = id
	return m, nil
}

// messageEvent is the complete SSE encoding of a chat message: built once per
// message and shared, byte for byte, by every subscriber.
//
// body is the JSON object produced by encodeBody; the ID is spliced in as its
// first member so that no second JSON encoding is needed. JSON never contains
// a raw CR or LF (encoding/json escapes them, and U+2028/U+2029 too), so user
// text cannot end the data line or inject SSE fields.
func messageEvent(id streamID, body []byte) *event {
	b := make([]byte, 0, len(body)+96)
	b = append(b, "id: "...)
	b = id.appendTo(b)
	b = append(b, "\nevent: message\ndata: {\"id\":\""...)
	b = id.appendTo(b)
	b = append(b, '"')
	if len(body) > 2 { // body is "{...}"; "{}" has no members to join
		b = append(b, ',')
	}
	b = append(b, body[1:]...)
	b = append(b, "\n\n"...)
	return &event{id: id, wire: b}
}

// controlEvent encodes an event without an ID (status, notice, disconnect):
// the browser's last event ID stays on the last chat message it received.
func controlEvent(name string, data any) *event {
	j, err := json.Marshal(data)
	if err != nil { // only for unencodable types: a programming error
		j = []byte(`{}`)
	}
	b := make([]byte, 0, len(name)+len(j)+16)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, j...)
	b = append(b, "\n\n"...)
	return &event{wire: b}
}

// notice is the data of an "event: notice": something the page should show.
type notice struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// inputError is a problem with what the client sent: it carries the HTTP
// status and a message meant for people.
type inputError struct {
	status int
	msg    string
}

func (e *inputError) Error() string { return e.msg }

func badInput(status int, format string, args ...any) error {
	return &inputError{status: status, msg: fmt.Sprintf(format, args...)}
}

var errEmptyMessage = errors.New("message is empty")

// cleanMessage validates and normalises a message text: valid UTF-8, line
// breaks normalised to "\n", trimmed, 1..max characters, no control
// characters other than newlines.
func cleanMessage(raw string, max int) (string, error) {
	if !utf8.ValidString(raw) {
		return "", badInput(400, "message is not valid UTF-8 text")
	}
	text := strings.ReplaceAll(raw, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.TrimSpace(text)
	if text == "" {
		return "", badInput(400, "%v: type something before sending", errEmptyMessage)
	}
	for _, r := range text {
		if r != '\n' && (unicode.IsControl(r) || isBidiControl(r)) {
			return "", badInput(400, "message contains a control character (U+%04X); only text and line breaks are allowed", r)
		}
	}
	if n := utf8.RuneCountInString(text); n > max {
		return "", badInput(413, "message is too long: %d characters, the limit is %d", n, max)
	}
	return text, nil
}

// isBidiControl reports the explicit bidirectional formatting characters that
// can make text display in a different order than it is stored ("Trojan
// Source"): embeddings, overrides and isolates.
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
