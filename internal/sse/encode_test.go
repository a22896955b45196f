package sse

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name            string
		id, event       string
		data            string
		want            string
		parsed          item // what a client reads back
		keepsPreviousID bool
	}{
		{"chat message", "1-0", "message", `{"text":"hi"}`,
			"id: 1-0\nevent: message\ndata: {\"text\":\"hi\"}\n\n", ev("message", `{"text":"hi"}`, "1-0"), false},
		{"no id line without an id", "", "status", `{}`,
			"event: status\ndata: {}\n\n", ev("status", "{}", ""), true},
		{"no event line without a name", "7", "", "x",
			"id: 7\ndata: x\n\n", ev("message", "x", "7"), false},
		{"empty data is still one data line", "", "", "",
			"data: \n\n", ev("message", "", ""), true},
		{"LF, CRLF and CR all split data lines", "", "", "a\nb\r\nc\rd",
			"data: a\ndata: b\ndata: c\ndata: d\n\n", ev("message", "a\nb\nc\nd", ""), true},
		{"CR alone splits too, and cannot inject", "", "", "a\r\rdata: injected\rid: 9",
			"data: a\ndata: \ndata: data: injected\ndata: id: 9\n\n", ev("message", "a\n\ndata: injected\nid: 9", ""), true},
		{"CR CR is two breaks, CRLF one", "", "", "a\r\rb\r\n\nc",
			"data: a\ndata: \ndata: b\ndata: \ndata: c\n\n", ev("message", "a\n\nb\n\nc", ""), true},
		{"trailing break kept", "", "", "a\n",
			"data: a\ndata: \n\n", ev("message", "a\n", ""), true},
		{"injection attempt stays data", "", "", "x\n\ndata: injected\nevent: evil\nid: 9\nretry: 1\n: c",
			"data: x\ndata: \ndata: data: injected\ndata: event: evil\ndata: id: 9\ndata: retry: 1\ndata: : c\n\n",
			ev("message", "x\n\ndata: injected\nevent: evil\nid: 9\nretry: 1\n: c", ""), true},
		{"leading spaces survive", " 1", "  e", " d",
			"id:  1\nevent:   e\ndata:  d\n\n", ev("  e", " d", " 1"), false},
		{"colons survive", "a:b", "c:d", ":e",
			"id: a:b\nevent: c:d\ndata: :e\n\n", ev("c:d", ":e", "a:b"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("id: before\ndata: first\n\n")
			got, err := AppendEvent(bytes.Clone(prefix), tt.id, tt.event, []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if string(got[len(prefix):]) != tt.want {
				t.Errorf("wire = %q, want %q", got[len(prefix):], tt.want)
			}
			want := tt.parsed
			if tt.keepsPreviousID {
				want.ID = "before"
			}
			items, _, err := readAll(t, bytes.NewReader(got), 64, 0)
			if !errors.Is(err, io.EOF) || !reflect.DeepEqual(items, []item{ev("message", "first", "before"), want}) {
				t.Errorf("parsed %+v, %v; want %+v", items, err, want)
			}
		})
	}
}

func TestAppendEventRefuses(t *testing.T) {
	bad := []string{"a\nb", "a\rb", "a\x00b", "\n", "\r", "\x00", "a\xffb", "\xed\xa0\x80"}
	dst := []byte("kept")
	for _, s := range bad {
		for _, c := range []struct{ field, id, name string }{
			{"id", s, "message"},
			{"event", "1", s},
		} {
			got, err := AppendEvent(dst, c.id, c.name, []byte("x"))
			if !errors.Is(err, ErrInvalidField) || !strings.Contains(err.Error(), c.field) {
				t.Errorf("%s %q: err = %v, want ErrInvalidField naming %s", c.field, s, err, c.field)
			}
			if string(got) != "kept" {
				t.Errorf("%s %q: dst = %q, want it unchanged", c.field, s, got)
			}
		}
	}
	// Data may hold line breaks and NUL, but must be UTF-8.
	for _, d := range []string{"a\xffb", "\xc3", "\xed\xa0\x80"} {
		if got, err := AppendEvent(dst, "1", "m", []byte(d)); !errors.Is(err, ErrInvalidField) || string(got) != "kept" {
			t.Errorf("data %q: %q, %v; want refused", d, got, err)
		}
	}
	if _, err := AppendEvent(nil, "1", "m", []byte("nul \x00 and \n are data")); err != nil {
		t.Errorf("data with NUL and LF: %v", err)
	}
}

func TestAppendComment(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"connected", ": connected\n"},
		{"", ": \n"},
		{"a\nb\r\nc\rd", ": a\n: b\n: c\n: d\n"},
		{"x\n\ndata: injected", ": x\n: \n: data: injected\n"},
	} {
		if got := string(AppendComment([]byte("<"), tt.in)); got != "<"+tt.want {
			t.Errorf("AppendComment(%q) = %q, want %q", tt.in, got, "<"+tt.want)
		}
	}
}

func TestAppendRetry(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{2 * time.Second, "retry: 2000\n"},
		{1500*time.Microsecond + 999, "retry: 1\n"}, // rounded down
		{0, "retry: 0\n"},
		{-time.Second, "retry: 0\n"},
	} {
		if got := string(AppendRetry(nil, tt.d)); got != tt.want {
			t.Errorf("AppendRetry(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestPrelude checks the pieces a server opens a stream with: a block of
// retry and comment lines that dispatches nothing.
func TestPrelude(t *testing.T) {
	var b []byte
	b = AppendRetry(b, 2*time.Second)
	b = AppendComment(b, "connected")
	b = AppendEnd(b)
	b, _ = AppendEvent(b, "1-1", "message", []byte("m"))
	if string(b) != "retry: 2000\n: connected\n\nid: 1-1\nevent: message\ndata: m\n\n" {
		t.Errorf("wire = %q", b)
	}
	items, _, err := readAll(t, bytes.NewReader(b), 64, 0)
	want := []item{retry(2 * time.Second), comment("connected"), ev("message", "m", "1-1")}
	if !errors.Is(err, io.EOF) || !reflect.DeepEqual(items, want) {
		t.Errorf("parsed %+v, %v; want %+v", items, err, want)
	}
}

func TestAppendAllocs(t *testing.T) {
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		var err error
		dst, err = AppendEvent(dst[:0], "1732650000000-0", "message", chatJSON)
		if err != nil {
			t.Fatal(err)
		}
		dst = AppendComment(dst, "ping\nline")
		dst = AppendEnd(AppendRetry(dst, time.Second))
		dst, _ = AppendEvent(dst, "", "", []byte("two\nlines"))
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

// BenchmarkAppendEvent encodes a typical chat message event (about 200
// bytes of JSON) into a reused buffer, as a server does once per message.
func BenchmarkAppendEvent(b *testing.B) {
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(chatJSON)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, err = AppendEvent(dst[:0], "1732650000000-0", "message", chatJSON)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEventMultiline is the slow path: data with line breaks.
func BenchmarkAppendEventMultiline(b *testing.B) {
	data := bytes.ReplaceAll(chatJSON, []byte(","), []byte(",\n"))
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = AppendEvent(dst[:0], "1732650000000-0", "message", data)
	}
}
