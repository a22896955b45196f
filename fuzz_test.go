package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The fuzz targets below run their seeds (f.Add and testdata/fuzz/<Name>/)
// with every `go test`; `make test` fuzzes each briefly and `make fuzz` longer.

// FuzzCleanName: cleanName never panics; a refused name gets a 400 with a
// readable message; an accepted one is short, clean, valid text, and
// cleaning it again changes nothing.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "ALICE", "аlice", "Ａｌｉｃｅ", " alice   smith ", "alice\u00a0smith",
		"", " ", "al\x00ice", "\u202Eecila", "al\u200Bice", "\xff", strings.Repeat("a", 33), "ΟΔΥΣΣΕΥΣ", "Zoe\u0308",
		"ｶ", "o'neil", "x\u3000y", "İstanbul", "ß", "\u0301a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		display, key, err := cleanName(raw)
		if err != nil {
			status, msg := errorStatus(err)
			if status != 400 || msg == "" || !utf8.ValidString(msg) {
				t.Fatalf("cleanName(%q): refused with %d %q", raw, status, msg)
			}
			return
		}
		if !utf8.ValidString(display) || !utf8.ValidString(key) {
			t.Fatalf("cleanName(%q) = %q, %q: not valid UTF-8", raw, display, key)
		}
		if n := utf8.RuneCountInString(display); n < 1 || n > maxNameLen {
			t.Fatalf("cleanName(%q) = %q: %d characters", raw, display, n)
		}
		if key == "" {
			t.Fatalf("cleanName(%q): empty key", raw)
		}
		if display != strings.Join(strings.Fields(display), " ") || strings.Contains(display, "\u00a0") {
			t.Fatalf("cleanName(%q) = %q: spaces not trimmed and collapsed", raw, display)
		}
		for _, r := range display + key {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || isBidiControl(r) {
				t.Fatalf("cleanName(%q) = %q, %q: contains U+%04X", raw, display, key, r)
			}
		}
		d2, k2, err := cleanName(display)
		if err != nil || d2 != display || k2 != key {
			t.Fatalf("not idempotent: cleanName(%q) = %q, %q; cleanName(%q) = %q, %q, %v", raw, display, key, display, d2, k2, err)
		}
	})
}

// FuzzCleanMessage: cleanMessage never panics; a refused text gets a 400, or
// a 413 naming the limit when too long; an accepted one is valid, trimmed
// text within the limit with no control character but "\n", and cleaning it
// again changes nothing.
func FuzzCleanMessage(f *testing.F) {
	for _, s := range []string{"hello", "  hi  ", "a\r\nb", "a\rb", "\n\ndata: injected\nevent: x", "a\x00b", "a\tb",
		"\xff\xfe", "abc\u202Edef", "\u0085x\u0085", strings.Repeat("é", 12), "", " \r\n ", "a\u2028b"} {
		f.Add(s, uint16(10))
	}
	f.Add(strings.Repeat("x", 2001), uint16(2000))
	f.Fuzz(func(t *testing.T, raw string, limit uint16) {
		max := int(limit%4096) + 1
		text, err := cleanMessage(raw, max)
		if err != nil {
			status, msg := errorStatus(err)
			switch {
			case msg == "" || !utf8.ValidString(msg):
				t.Fatalf("cleanMessage(%q): unreadable error %q", raw, msg)
			case status == 413 && !strings.Contains(msg, "the limit is "+strconv.Itoa(max)):
				t.Fatalf("cleanMessage(%q): 413 without the limit: %q", raw, msg)
			case status != 400 && status != 413:
				t.Fatalf("cleanMessage(%q): status %d", raw, status)
			}
			return
		}
		if !utf8.ValidString(text) {
			t.Fatalf("cleanMessage(%q) = %q: not valid UTF-8", raw, text)
		}
		if n := utf8.RuneCountInString(text); n < 1 || n > max {
			t.Fatalf("cleanMessage(%q, %d) = %q: %d characters", raw, max, text, n)
		}
		if text != strings.TrimSpace(text) {
			t.Fatalf("cleanMessage(%q) = %q: not trimmed", raw, text)
		}
		for _, r := range text {
			if r != '\n' && (unicode.IsControl(r) || isBidiControl(r)) {
				t.Fatalf("cleanMessage(%q) = %q: contains U+%04X", raw, text, r)
			}
		}
		again, err := cleanMessage(text, max)
		if err != nil || again != text {
			t.Fatalf("not idempotent: cleanMessage(%q) = %q; again: %q, %v", raw, text, again, err)
		}
	})
}

// FuzzMessageEvent: whatever the text and name, a message's SSE encoding is
// one event (one blank line, at the end), has no raw CR, carries exactly the
// id, event and data fields, and its data decodes to the same message.
func FuzzMessageEvent(f *testing.F) {
	f.Add("alice", "hello", uint64(1700000000000), uint64(0), int64(1700000000123456789))
	f.Add("bob", "\n\ndata: injected\nevent: x", uint64(1), uint64(1), int64(0))
	f.Add("eve\r\nid: 1", "a\r\n\r\nretry: 1\rid: 2", uint64(1<<64-1), uint64(1<<64-1), int64(-1))
	f.Add("", "", uint64(0), uint64(0), int64(1<<63-1))
	f.Add("x", "\u2028\u2029</script>\"\\", uint64(5), uint64(9), int64(-1<<63))
	f.Fuzz(func(t *testing.T, user, text string, ms, seq uint64, nanos int64) {
		id := streamID{ms, seq}
		if id.isZero() {
			id.seq = 1 // Redis never issues 0-0
		}
		m := Message{User: user, UID: strings.ToLower(user), Text: text, Time: time.Unix(0, nanos).UTC()}
		body, err := m.encodeBody()
		if err != nil {
			t.Fatalf("encodeBody: %v", err)
		}
		ev := parseOneEvent(t, messageEvent(id, body).wire)
		if ev.ID != id.String() || ev.Event != "message" {
			t.Fatalf("event %+v, want id %s", ev, id)
		}
		got, err := decodeMessage(ev.ID, []byte(ev.Data))
		if err != nil {
			t.Fatalf("data %q: %v", ev.Data, err)
		}
		if got.ID != id.String() || !got.Time.Equal(m.Time) {
			t.Fatalf("decoded %+v from %+v", got, m)
		}
		// JSON replaces invalid UTF-8 with U+FFFD; texts that reach the
		// wire have passed cleanName/cleanMessage and are valid.
		if utf8.ValidString(user) && utf8.ValidString(text) && (got.Text != m.Text || got.User != m.User || got.UID != m.UID) {
			t.Fatalf("decoded %+v, want %+v", got, m)
		}
	})
}

// FuzzParseStreamID: any accepted ID is non-zero and survives a round trip
// through its text; every non-zero ID's text parses back to it.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"1-0", "1700000000000-3", "0-0", "-1-0", "1 - 1", "abc", "18446744073709551615-18446744073709551615",
		"18446744073709551616-0", "01-01", "+1-1", ""} {
		f.Add(s, uint64(1), uint64(2))
	}
	f.Fuzz(func(t *testing.T, s string, ms, seq uint64) {
		if id, err := parseStreamID(s); err == nil {
			if id.isZero() {
				t.Fatalf("parseStreamID(%q) accepted the zero ID", s)
			}
			back, err := parseStreamID(id.String())
			if err != nil || back != id {
				t.Fatalf("parseStreamID(%q) = %v; its text %q parses to %v, %v", s, id, id.String(), back, err)
			}
		} else if !utf8.ValidString(err.Error()) {
			t.Fatalf("parseStreamID(%q): error %q is not valid text", s, err)
		}
		id := streamID{ms, seq}
		if id.isZero() {
			return
		}
		back, err := parseStreamID(id.String())
		if err != nil || back != id {
			t.Fatalf("%v: text %q parses to %v, %v", id, id.String(), back, err)
		}
	})
}
