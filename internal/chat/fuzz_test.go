package chat

import (
	"strconv"
	"strings"
	"testing"
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
		display, key, err := CleanName(raw)
		if err != nil {
			status, msg := inputStatus(t, err)
			if status != 400 || msg == "" || !utf8.ValidString(msg) {
				t.Fatalf("CleanName(%q): refused with %d %q", raw, status, msg)
			}
			return
		}
		if !utf8.ValidString(display) || !utf8.ValidString(key) {
			t.Fatalf("CleanName(%q) = %q, %q: not valid UTF-8", raw, display, key)
		}
		if n := utf8.RuneCountInString(display); n < 1 || n > MaxNameLen {
			t.Fatalf("CleanName(%q) = %q: %d characters", raw, display, n)
		}
		if key == "" {
			t.Fatalf("CleanName(%q): empty key", raw)
		}
		if display != strings.Join(strings.Fields(display), " ") || strings.Contains(display, "\u00a0") {
			t.Fatalf("CleanName(%q) = %q: spaces not trimmed and collapsed", raw, display)
		}
		for _, r := range display + key {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || IsBidiControl(r) {
				t.Fatalf("CleanName(%q) = %q, %q: contains U+%04X", raw, display, key, r)
			}
		}
		d2, k2, err := CleanName(display)
		if err != nil || d2 != display || k2 != key {
			t.Fatalf("not idempotent: CleanName(%q) = %q, %q; CleanName(%q) = %q, %q, %v", raw, display, key, display, d2, k2, err)
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
		text, err := CleanMessage(raw, max)
		if err != nil {
			status, msg := inputStatus(t, err)
			switch {
			case msg == "" || !utf8.ValidString(msg):
				t.Fatalf("CleanMessage(%q): unreadable error %q", raw, msg)
			case status == 413 && !strings.Contains(msg, "the limit is "+strconv.Itoa(max)):
				t.Fatalf("CleanMessage(%q): 413 without the limit: %q", raw, msg)
			case status != 400 && status != 413:
				t.Fatalf("CleanMessage(%q): status %d", raw, status)
			}
			return
		}
		if !utf8.ValidString(text) {
			t.Fatalf("CleanMessage(%q) = %q: not valid UTF-8", raw, text)
		}
		if n := utf8.RuneCountInString(text); n < 1 || n > max {
			t.Fatalf("CleanMessage(%q, %d) = %q: %d characters", raw, max, text, n)
		}
		if text != strings.TrimSpace(text) {
			t.Fatalf("CleanMessage(%q) = %q: not trimmed", raw, text)
		}
		for _, r := range text {
			if r != '\n' && (unicode.IsControl(r) || IsBidiControl(r)) {
				t.Fatalf("CleanMessage(%q) = %q: contains U+%04X", raw, text, r)
			}
		}
		again, err := CleanMessage(text, max)
		if err != nil || again != text {
			t.Fatalf("not idempotent: CleanMessage(%q) = %q; again: %q, %v", raw, text, again, err)
		}
	})
}

// FuzzParseID: any accepted ID is non-zero and survives a round trip
// through its text; every non-zero ID's text parses back to it.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1-0", "1700000000000-3", "0-0", "-1-0", "1 - 1", "abc", "18446744073709551615-18446744073709551615",
		"18446744073709551616-0", "01-01", "+1-1", ""} {
		f.Add(s, uint64(1), uint64(2))
	}
	f.Fuzz(func(t *testing.T, s string, ms, seq uint64) {
		if id, err := ParseID(s); err == nil {
			if id.IsZero() {
				t.Fatalf("ParseID(%q) accepted the zero ID", s)
			}
			back, err := ParseID(id.String())
			if err != nil || back != id {
				t.Fatalf("ParseID(%q) = %v; its text %q parses to %v, %v", s, id, id.String(), back, err)
			}
		} else if !utf8.ValidString(err.Error()) {
			t.Fatalf("ParseID(%q): error %q is not valid text", s, err)
		}
		id := ID{ms, seq}
		if id.IsZero() {
			return
		}
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("%v: text %q parses to %v, %v", id, id.String(), back, err)
		}
	})
}

// FuzzParsePositions: any input parses or fails cleanly, and what parses
// formats back to a position that parses to the same thing.
func FuzzParsePositions(f *testing.F) {
	for _, s := range []string{"1-0", "1733050000000-0,dev=1733050001234-1,ops=0-0", "dev=0-0", "a=1-1,a=1-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := ParsePositions(s)
		if err != nil {
			return
		}
		rooms := make([]string, 0, len(pos))
		for r := range pos {
			rooms = append(rooms, r)
		}
		again, err := ParsePositions(FormatPositions(SortRooms(rooms), pos))
		if err != nil || len(again) != len(pos) {
			t.Fatalf("%q: round trip failed: %v %v", s, again, err)
		}
		for r, id := range pos {
			if again[r] != id {
				t.Fatalf("%q: room %s: %v != %v", s, r, again[r], id)
			}
		}
	})
}
