package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestCleanMessage lists message texts with what is stored, or the status and
// a part of the message the sender reads.
func TestCleanMessage(t *testing.T) {
	const limit = 10
	tests := []struct {
		name, raw, want string
		status          int    // 0: accepted
		errPart         string // part of the error message
	}{
		{name: "plain", raw: "hello", want: "hello"},
		{name: "trimmed", raw: "  hello \t ", want: "hello"},
		{name: "trailing newlines trimmed", raw: "\n\nhello\n\n", want: "hello"},
		{name: "inner spaces kept", raw: "a  b", want: "a  b"},
		{name: "newline allowed", raw: "a\nb", want: "a\nb"},
		{name: "blank line allowed", raw: "a\n\nb", want: "a\n\nb"},
		{name: "CRLF becomes LF", raw: "a\r\nb", want: "a\nb"},
		{name: "lone CR becomes LF", raw: "a\rb", want: "a\nb"},
		{name: "CR CR LF", raw: "a\r\r\nb", want: "a\n\nb"},
		{name: "SSE field text stays text", raw: "x\n\ndata: y", want: "x\n\ndata: y"},
		{name: "HTML stays text", raw: "<b>hi</b>", want: "<b>hi</b>"},
		{name: "zero-width space is text", raw: "a\u200bb", want: "a\u200bb"},
		{name: "line separator is text", raw: "a\u2028b", want: "a\u2028b"},
		{name: "exactly the limit", raw: strings.Repeat("x", limit), want: strings.Repeat("x", limit)},
		{name: "limit counts characters, not bytes", raw: strings.Repeat("é", limit), want: strings.Repeat("é", limit)},
		{name: "limit applies after trimming", raw: "   " + strings.Repeat("x", limit) + "\r\n", want: strings.Repeat("x", limit)},
		{name: "CRLF counts as one character", raw: "abcd\r\nefgh", want: "abcd\nefgh"},

		{name: "empty", raw: "", status: 400, errPart: "message is empty"},
		{name: "only spaces and newlines", raw: " \r\n \n\t", status: 400, errPart: "message is empty"},
		{name: "invalid UTF-8", raw: "a\xffb", status: 400, errPart: "not valid UTF-8"},
		{name: "NUL", raw: "a\x00b", status: 400, errPart: "U+0000"},
		{name: "tab inside", raw: "a\tb", status: 400, errPart: "U+0009"},
		{name: "escape sequence", raw: "\x1b[2Jhi", status: 400, errPart: "U+001B"},
		{name: "bell", raw: "a\x07", status: 400, errPart: "U+0007"},
		{name: "DEL", raw: "a\x7fb", status: 400, errPart: "U+007F"},
		{name: "C1 control", raw: "a\u0085b", status: 400, errPart: "U+0085"},
		{name: "vertical tab", raw: "a\vb", status: 400, errPart: "U+000B"},
		{name: "form feed", raw: "a\fb", status: 400, errPart: "U+000C"},
		{name: "right-to-left override", raw: "abc\u202Edef", status: 400, errPart: "U+202E"},
		{name: "first strong isolate", raw: "abc\u2068def", status: 400, errPart: "U+2068"},
		{name: "one over the limit", raw: strings.Repeat("x", limit+1), status: 413, errPart: "the limit is 10"},
		{name: "over the limit in characters", raw: strings.Repeat("é", limit+1), status: 413, errPart: "11 characters, the limit is 10"},
		{name: "far over the limit", raw: strings.Repeat("x", 70000), status: 413, errPart: "the limit is 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cleanMessage(tc.raw, limit)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("cleanMessage(%q): %v", tc.raw, err)
				}
				if got != tc.want {
					t.Fatalf("cleanMessage(%q) = %q, want %q", tc.raw, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("cleanMessage(%q) = %q, want an error", tc.raw, got)
			}
			status, msg := errorStatus(err)
			if status != tc.status || !strings.Contains(msg, tc.errPart) {
				t.Fatalf("cleanMessage(%q): %d %q; want %d with %q", tc.raw, status, msg, tc.status, tc.errPart)
			}
		})
	}
}

// TestMessageEventFraming checks the SSE encoding of hostile texts: one
// event, three fields, the text back intact from the JSON.
func TestMessageEventFraming(t *testing.T) {
	texts := []string{
		"hello",
		"\n\ndata: injected\nevent: x",
		"a\r\nid: 9-9\r\n\r\nretry: 1",
		": comment\n\n",
		"\u2028\u2029 line separators",
		`"quoted" \ backslash </script>`,
	}
	for _, text := range texts {
		m := Message{User: "alice", UID: "alice", Text: text, Time: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
		body, err := m.encodeBody()
		if err != nil {
			t.Fatal(err)
		}
		id := streamID{1700000000000, 7}
		wire := messageEvent(id, body).wire
		ev := parseOneEvent(t, wire)
		if ev.ID != "1700000000000-7" || ev.Event != "message" {
			t.Fatalf("text %q: event %+v", text, ev)
		}
		got, err := decodeMessage(ev.ID, []byte(ev.Data))
		if err != nil {
			t.Fatalf("text %q: %v", text, err)
		}
		if got.Text != text || got.User != "alice" || got.ID != "1700000000000-7" || !got.Time.Equal(m.Time) {
			t.Fatalf("text %q: decoded %+v", text, got)
		}
	}
}

// parseOneEvent parses wire as an EventSource would and requires it to be
// exactly one complete event with id, event and one data line.
func parseOneEvent(t testing.TB, wire []byte) sseEvent {
	t.Helper()
	if bytes.ContainsRune(wire, '\r') {
		t.Fatalf("raw CR on the wire: %q", wire)
	}
	if !bytes.HasSuffix(wire, []byte("\n\n")) || bytes.Count(wire, []byte("\n\n")) != 1 {
		t.Fatalf("want exactly one blank line, at the end: %q", wire)
	}
	var ev sseEvent
	fields := 0
	sc := bufio.NewScanner(bytes.NewReader(wire))
	sc.Buffer(nil, len(wire)+1)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		fields++
		switch name {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			ev.Data = value
		default:
			t.Fatalf("unexpected field %q in %q", name, wire)
		}
	}
	if fields != 3 {
		t.Fatalf("want 3 fields (id, event, data), got %d: %q", fields, wire)
	}
	return ev
}

// TestParseStreamID checks which Last-Event-ID values are message IDs.
func TestParseStreamID(t *testing.T) {
	good := map[string]streamID{
		"1-0":             {1, 0},
		"1700000000000-3": {1700000000000, 3},
		"0-1":             {0, 1},
		"18446744073709551615-18446744073709551615": {1<<64 - 1, 1<<64 - 1},
	}
	for s, want := range good {
		got, err := parseStreamID(s)
		if err != nil || got != want {
			t.Errorf("parseStreamID(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%q round-trips to %q", s, got.String())
		}
	}
	for _, s := range []string{"", "-", "1", "1-", "-1", "-1-0", "1--1", "1-1-1", " 1-1", "1-1 ", "1 - 1",
		"a-1", "1-b", "abc", "+1-1", "0x1-1", "1.5-1", "18446744073709551616-0", "99999999999999999999999-0",
		"1-1\n", "1-1\x00", "0-0", "00-0"} {
		if id, err := parseStreamID(s); err == nil {
			t.Errorf("parseStreamID(%q) = %v, want an error", s, id)
		}
	}
}
