// Package sse writes and reads Server-Sent Events (text/event-stream), as
// defined by the WHATWG HTML standard, section 9.2 "Server-sent events".
//
// The Append functions encode: they append to a caller's buffer and
// allocate nothing but its growth, so a server can build an event once and
// send the same bytes to every subscriber. Nothing they write can end an
// event early or inject a field: data and comment text are split into one
// line per line break, and an event ID or name that could do harm is
// refused with an error.
//
// Reader decodes a stream exactly as an EventSource interprets it
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
// within a memory bound, without allocating per event once its buffers
// have grown.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrInvalidField is the error AppendEvent wraps when an ID or name cannot
// be sent as given: it contains CR, LF or NUL, or it (or the data) is not
// valid UTF-8.
var ErrInvalidField = errors.New("sse: invalid field")

// AppendEvent appends one complete event to dst, ending with the blank line
// that dispatches it, and returns the extended buffer:
//
//	id: <id>          (left out when id is "")
//	event: <name>     (left out when name is ""; the client then sees "message")
//	data: <line>      (one per line of data; CRLF, LF and CR all break lines)
//	<blank line>
//
// The client receives data with its line breaks as LF; an empty data is
// sent as one empty line, so the event is still dispatched (with data "").
// Leaving id out keeps the client's last event ID unchanged.
//
// An id or name containing CR, LF or NUL could end the line it is on and
// inject fields (or, for NUL, make the client drop the ID), and invalid
// UTF-8 would reach the client as U+FFFD, not as sent: in those cases
// AppendEvent appends nothing and returns dst and an error wrapping
// ErrInvalidField. So every event it accepts reads back as exactly id,
// name and data (line breaks as LF).
func AppendEvent(dst []byte, id, name string, data []byte) ([]byte, error) {
	if err := checkField("id", id); err != nil {
		return dst, err
	}
	if err := checkField("event", name); err != nil {
		return dst, err
	}
	if !utf8.Valid(data) {
		return dst, fmt.Errorf("%w: data is not valid UTF-8", ErrInvalidField)
	}
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 {
		dst = append(dst, "data: "...) // the common case: one line (JSON has no raw line breaks)
		dst = append(dst, data...)
		dst = append(dst, '\n', '\n')
		return dst, nil
	}
	dst = appendLines(dst, "data: ", data)
	return append(dst, '\n'), nil
}

// checkField reports why s cannot be the value of an "id" or "event" line.
func checkField(field, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return fmt.Errorf("%w: event %s %q contains CR, LF or NUL", ErrInvalidField, field, clip(s))
		}
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: event %s %q is not valid UTF-8", ErrInvalidField, field, clip(s))
	}
	return nil
}

// AppendComment appends text as comment lines (": <line>"), one per line of
// text (CRLF, LF and CR all break lines). EventSource ignores comments;
// servers send them as heartbeats, and Reader reports them. A comment does
// not end an event: a blank line (AppendEnd) does.
func AppendComment(dst []byte, text string) []byte {
	return appendLines(dst, ": ", text)
}

// AppendRetry appends a "retry:" line: the client waits d before
// reconnecting. d is sent in whole milliseconds (rounded down); a negative
// d is sent as 0.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	return append(dst, '\n')
}

// AppendEnd appends the blank line that ends an event: the client
// dispatches what it has collected (nothing, after complete events).
// AppendEvent ends its own events; AppendEnd closes a block of retry and
// comment lines, such as a stream's prelude "retry: 2000\n: connected\n\n",
// so that what follows starts a new event.
func AppendEnd(dst []byte) []byte {
	return append(dst, '\n')
}

// appendLines appends prefix+line+LF for every line of text, splitting at
// CRLF, LF and CR. A text ending in a line break ends with an empty line,
// so the break survives.
func appendLines[T string | []byte](dst []byte, prefix string, text T) []byte {
	for {
		i := 0
		for i < len(text) && text[i] != '\n' && text[i] != '\r' {
			i++
		}
		dst = append(dst, prefix...)
		dst = append(dst, text[:i]...)
		dst = append(dst, '\n')
		if i == len(text) {
			return dst
		}
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
