package chat

import (
	"errors"
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
			got, err := CleanMessage(tc.raw, limit)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("CleanMessage(%q): %v", tc.raw, err)
				}
				if got != tc.want {
					t.Fatalf("CleanMessage(%q) = %q, want %q", tc.raw, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("CleanMessage(%q) = %q, want an error", tc.raw, got)
			}
			status, msg := inputStatus(t, err)
			if status != tc.status || !strings.Contains(msg, tc.errPart) {
				t.Fatalf("CleanMessage(%q): %d %q; want %d with %q", tc.raw, status, msg, tc.status, tc.errPart)
			}
		})
	}
}

// TestParseID checks which Last-Event-ID values are message IDs.
func TestParseID(t *testing.T) {
	good := map[string]ID{
		"1-0":             {1, 0},
		"1700000000000-3": {1700000000000, 3},
		"0-1":             {0, 1},
		"18446744073709551615-18446744073709551615": {1<<64 - 1, 1<<64 - 1},
	}
	for s, want := range good {
		got, err := ParseID(s)
		if err != nil || got != want {
			t.Errorf("ParseID(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%q round-trips to %q", s, got.String())
		}
	}
	for _, s := range []string{"", "-", "1", "1-", "-1", "-1-0", "1--1", "1-1-1", " 1-1", "1-1 ", "1 - 1",
		"a-1", "1-b", "abc", "+1-1", "0x1-1", "1.5-1", "18446744073709551616-0", "99999999999999999999999-0",
		"1-1\n", "1-1\x00", "0-0", "00-0"} {
		if id, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) = %v, want an error", s, id)
		}
	}
}

// TestParsePosition: a position is an ID or "0-0", before the first message.
func TestParsePosition(t *testing.T) {
	if id, err := ParsePosition("0-0"); err != nil || !id.IsZero() {
		t.Fatalf("ParsePosition(0-0) = %v, %v", id, err)
	}
	for _, s := range []string{"", "0", "-0", "0-", " 0-0", "0-0 "} {
		if _, err := ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q): want an error", s)
		}
	}
}

// TestDecodeStored lists stored bodies: valid ones decode with their ID,
// room and sequence; anything else is ErrMalformed, never an empty message.
func TestDecodeStored(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good, _ := Message{User: "Alice", UID: "alice", Text: "hi", Time: when}.Body()
	id := ID{1700000000000, 1}
	m, err := DecodeStored("chat", id, 7, good)
	if err != nil || m.ID != "1700000000000-1" || m.Room != "chat" || m.Seq != 7 || m.User != "Alice" || m.Text != "hi" || !m.Time.Equal(when) {
		t.Fatalf("DecodeStored(good) = %+v, %v", m, err)
	}
	// Unknown fields (a newer writer) are dropped, not trusted: a forged
	// "id" in the body cannot replace the real one.
	if m, err := DecodeStored("chat", id, 7, []byte(`{"id":"9-9","user":"a","uid":"a","text":"t","time":"2026-01-02T03:04:05Z","extra":1}`)); err != nil || m.ID != id.String() {
		t.Fatalf("body with extra fields: %+v, %v", m, err)
	}
	bad := map[string]string{
		"empty":          ``,
		"space":          ` `,
		"not JSON":       `hello`,
		"array":          `[]`,
		"no user":        `{"uid":"a","text":"t","time":"2026-01-02T03:04:05Z"}`,
		"no uid":         `{"user":"a","text":"t","time":"2026-01-02T03:04:05Z"}`,
		"no text":        `{"user":"a","uid":"a","time":"2026-01-02T03:04:05Z"}`,
		"no time":        `{"user":"a","uid":"a","text":"t"}`,
		"bad time":       `{"user":"a","uid":"a","text":"t","time":"yesterday"}`,
		"wrong type":     `{"user":1,"uid":"a","text":"t","time":"2026-01-02T03:04:05Z"}`,
		"huge":           `{"user":"a","uid":"a","time":"2026-01-02T03:04:05Z","text":"` + strings.Repeat("x", MaxBodyBytes) + `"}`,
		"long user":      `{"user":"` + strings.Repeat("a", 300) + `","uid":"a","text":"t","time":"2026-01-02T03:04:05Z"}`,
		"trailing bytes": `{"user":"a","uid":"a","text":"t","time":"2026-01-02T03:04:05Z"} x`,
	}
	for name, raw := range bad {
		if m, err := DecodeStored("chat", id, 1, []byte(raw)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeStored = %+v, %v; want ErrMalformed", name, m, err)
		}
	}
	if _, err := DecodeStored("chat", ID{}, 1, good); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero ID: %v; want ErrMalformed", err)
	}
}

// inputStatus returns the status and message of an *InputError.
func inputStatus(t testing.TB, err error) (int, string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InputError", err, err)
	}
	return ie.Status, ie.Msg
}

// BenchmarkDecodeStored is the validation of one payload or history entry,
// paid once per message per instance.
func BenchmarkDecodeStored(b *testing.B) {
	body, _ := Message{User: "alice", UID: "alice", Text: "hello, this is a typical chat message", Time: time.Now()}.Body()
	id := ID{1732650000000, 0}
	b.ReportAllocs()
	for b.Loop() {
		DecodeStored(DefaultRoom, id, 42, body)
	}
}

// TestCleanMessageWalls: invisible tag characters are refused (but for a
// region's flag emoji), and so are more than MaxCombiningRun stacked
// combining marks, while ordinary accented and Indic text passes.
func TestCleanMessageWalls(t *testing.T) {
	zalgo := "Z" + strings.Repeat("\u0336", MaxCombiningRun+1)
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"hello\U000E0041\U000E0042", false}, // hidden "AB"
		{"\U000E0001hi", false},              // language tag
		{"flag \U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F", true}, // England
		{"\U0001F3F4\U000E0067\U000E0062 unended", false},
		{"\U0001F3F4\U000E0067\U000E0062", false},
		{"\U0001F3F4\U000E007F", false}, // no region
		{"x\U000E007F", false},
		{zalgo, false},
		{"Z" + strings.Repeat("\u0336", MaxCombiningRun), true},
		{"Tiếng Việt ệ", true},
		{"בְּרֵאשִׁ֖ית", true},
		{"हिन्दी नमस्ते", true},
		{strings.Repeat("a\u0301", 50), true}, // many marks, none stacked
	} {
		_, err := CleanMessage(tc.text, 2000)
		if (err == nil) != tc.ok {
			t.Errorf("CleanMessage(%+q): err %v, want ok %v", tc.text, err, tc.ok)
		}
		var ie *InputError
		if err != nil && (!errors.As(err, &ie) || ie.Status != 400) {
			t.Errorf("CleanMessage(%+q): %v, want a 400 InputError", tc.text, err)
		}
	}
}
