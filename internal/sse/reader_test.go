package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readAll parses src to the end and returns every item, the last event ID
// and the error that ended the stream.
func readAll(t testing.TB, src io.Reader, bufSize, maxLine int) ([]item, string, error) {
	t.Helper()
	p := NewReaderSize(src, bufSize, maxLine)
	var out []item
	for range 100_000 {
		it, err := p.Next()
		if err != nil {
			return out, string(p.LastEventID()), err
		}
		out = append(out, toItem(it))
	}
	t.Fatal("Reader did not reach the end of the stream")
	return nil, "", nil
}

// sources are the ways each table input is fed to a Reader: at once, one
// byte per Read (every line end split from what follows, CRLF split in
// two), and in 7-byte pieces (boundaries at other places).
var sources = []struct {
	name string
	of   func(string) io.Reader
}{
	{"whole", func(s string) io.Reader { return strings.NewReader(s) }},
	{"bytewise", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }},
	{"7-byte reads", func(s string) io.Reader { return &chunkReader{s: s, n: 7} }},
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	s string
	n int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}

// specCases are the examples of the WHATWG standard (section 9.2.6,
// "Interpreting an event stream", and 9.2.1) and the edge cases of its
// rules. Each case names the rule it checks.
var specCases = []struct {
	name string
	in   string
	want []item
	last string // LastEventID at the end
}{
	// The standard's own examples.
	{"spec: data lines joined with LF",
		"data: YHOO\ndata: +2\ndata: 10\n\n",
		[]item{ev("message", "YHOO\n+2\n10", "")}, ""},
	{"spec: comment, id, empty id resets, one space removed",
		": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
		[]item{comment("test stream"), ev("message", "first event", "1"), ev("message", "second event", ""),
			ev("message", " third event", "")}, ""},
	{"spec: field without colon, empty data, unfinished block discarded",
		"data\n\ndata\ndata\n\ndata:",
		[]item{ev("message", "", ""), ev("message", "\n", "")}, ""},
	{"spec: space after colon optional",
		"data:test\n\ndata: test\n\n",
		[]item{ev("message", "test", ""), ev("message", "test", "")}, ""},
	{"spec: event types",
		"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
		[]item{ev("add", "73857293", ""), ev("remove", "2153", ""), ev("add", "113411", "")}, ""},

	// Line ends.
	{"CR-only line ends",
		"event: a\rdata: x\rid: 7\r\rdata: y\r\r",
		[]item{ev("a", "x", "7"), ev("message", "y", "7")}, "7"},
	{"CRLF line ends",
		"data: a\r\ndata: b\r\n\r\n",
		[]item{ev("message", "a\nb", "")}, ""},
	{"CR CR is two line ends, not one",
		"data: a\r\rdata: b\r\n\r\n",
		[]item{ev("message", "a", ""), ev("message", "b", "")}, ""},
	{"LF CR is two line ends",
		"data: a\n\rdata: b\n\n",
		[]item{ev("message", "a", ""), ev("message", "b", "")}, ""},
	{"CRLF after CR",
		"data: a\r\r\ndata: b\n\n",
		[]item{ev("message", "a", ""), ev("message", "b", "")}, ""},

	// Byte order mark.
	{"BOM stripped at the start",
		"\xEF\xBB\xBFdata: x\n\n",
		[]item{ev("message", "x", "")}, ""},
	{"only one BOM stripped",
		"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n",
		[]item{ev("message", "y", "")}, ""},
	{"BOM later is text",
		"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
		[]item{ev("message", "a", "")}, ""},
	{"half a BOM is text",
		"\xEF\xBBdata: x\n\ndata: y\n\n",
		[]item{ev("message", "y", "")}, ""},

	// Fields.
	{"data without space",
		"data:x\n\n",
		[]item{ev("message", "x", "")}, ""},
	{"only one space removed",
		"data:  x\nevent:  t\n\n",
		[]item{ev(" t", " x", "")}, ""},
	{"value keeps later colons",
		"data: a:b: c\nevent:x:y\n\n",
		[]item{ev("x:y", "a:b: c", "")}, ""},
	{"multiple data lines, empty ones too",
		"data: a\ndata:\ndata\ndata: b\n\n",
		[]item{ev("message", "a\n\n\nb", "")}, ""},
	{"trailing empty data line keeps one LF",
		"data: a\ndata:\n\n",
		[]item{ev("message", "a\n", "")}, ""},
	{"field names are case-sensitive; unknown fields ignored",
		"Data: x\nDATA: y\ndata : z\nfoo: w\nfoo\n\n",
		nil, ""},
	{"event without colon sets an empty type",
		"event: a\nevent\ndata: x\n\n",
		[]item{ev("message", "x", "")}, ""},
	{"the last event field wins",
		"event: a\nevent: b\ndata: x\n\n",
		[]item{ev("b", "x", "")}, ""},
	{"event type does not carry over",
		"event: a\ndata: 1\n\ndata: 2\n\n",
		[]item{ev("a", "1", ""), ev("message", "2", "")}, ""},

	// Comments.
	{"comment forms",
		":\n: hi\n:  two\n:x\n",
		[]item{comment(""), comment("hi"), comment(" two"), comment("x")}, ""},
	{"comment inside an event",
		"data: a\n: ping\ndata: b\n\n",
		[]item{comment("ping"), ev("message", "a\nb", "")}, ""},

	// IDs.
	{"id with NUL ignored",
		"id: 1\ndata: a\n\nid: 2\x00x\ndata: b\n\n",
		[]item{ev("message", "a", "1"), ev("message", "b", "1")}, "1"},
	{"last event ID persists across events",
		"id: 5\ndata: a\n\ndata: b\n\n",
		[]item{ev("message", "a", "5"), ev("message", "b", "5")}, "5"},
	{"event without data still sets the last event ID",
		"id: 5\nevent: x\n\ndata: b\n\n",
		[]item{ev("message", "b", "5")}, "5"},
	{"last event ID of an ID-only block",
		"data: a\n\nid: 9\n\n",
		[]item{ev("message", "a", "")}, "9"},
	{"empty id resets the last event ID",
		"id: 5\ndata: a\n\nid:\ndata: b\n\n",
		[]item{ev("message", "a", "5"), ev("message", "b", "")}, ""},
	{"id of an unfinished event is not the last event ID",
		"id: 1\ndata: a\n\nid: 2\ndata: b\n",
		[]item{ev("message", "a", "1")}, "1"},
	{"id keeps spaces after the first",
		"id:  x \ndata: a\n\n",
		[]item{ev("message", "a", " x ")}, " x "},

	// Retry.
	{"retry in milliseconds",
		"retry: 1500\nretry:0010\n",
		[]item{retry(1500 * time.Millisecond), retry(10 * time.Millisecond)}, ""},
	{"retry with non-digits ignored",
		"retry: 15x\nretry: -1\nretry: +1\nretry:  15\nretry: 1.5\nretry: 1e3\nretry:\nretry\nretry: 1 \n",
		nil, ""},
	{"huge retry saturates",
		"retry: 99999999999999999999999999\n",
		[]item{retry(math.MaxInt64)}, ""},
	{"retry does not end an event",
		"data: a\nretry: 7\ndata: b\n\n",
		[]item{retry(7 * time.Millisecond), ev("message", "a\nb", "")}, ""},

	// Dispatch and the end of the stream.
	{"event without data not dispatched, type reset",
		"event: a\n\ndata: x\n\n",
		[]item{ev("message", "x", "")}, ""},
	{"blank lines alone dispatch nothing",
		"\n\n\r\n\r",
		nil, ""},
	{"unfinished event discarded at EOF",
		"data: a\n\ndata: b\n",
		[]item{ev("message", "a", "")}, ""},
	{"unterminated line discarded at EOF",
		"data: a\n\ndata: b",
		[]item{ev("message", "a", "")}, ""},
	{"unterminated retry at EOF ignored",
		"id: 1\ndata: a\n\nretry: 5",
		[]item{ev("message", "a", "1")}, "1"},
	{"unterminated comment at EOF ignored",
		": c",
		nil, ""},
	{"a CR at EOF still ends a blank line",
		"data: a\n\ndata: b\n\r",
		[]item{ev("message", "a", ""), ev("message", "b", "")}, ""},
	{"event ended by CR at EOF",
		"data: a\r\r",
		[]item{ev("message", "a", "")}, ""},

	// Encoding.
	{"invalid UTF-8 becomes U+FFFD",
		"data: a\xffb\nevent: \xc3\n\n",
		[]item{ev("\uFFFD", "a\uFFFDb", "")}, ""},
	{"one U+FFFD per maximal subpart (Unicode table 3-8)",
		"data: \x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64\n\n",
		[]item{ev("message", "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd", "")}, ""},
	{"invalid UTF-8 in ids and comments",
		"id: \xed\xa0\x80\n:\xf4\x90\n data\n\xffdata: x\n\n",
		[]item{comment("\uFFFD\uFFFD")}, "\uFFFD\uFFFD\uFFFD"},
	{"valid multibyte text untouched",
		"data: h\u00e9llo \u4e16\u754c \U0001F600 \uFFFD\n\n",
		[]item{ev("message", "h\u00e9llo \u4e16\u754c \U0001F600 \uFFFD", "")}, ""},
}

func TestReaderSpec(t *testing.T) {
	for _, tt := range specCases {
		t.Run(tt.name, func(t *testing.T) {
			// The reference must agree with the case, so that the fuzz
			// comparison against it means something.
			if got, last := refParse([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) || last != tt.last {
				t.Errorf("reference: %+v, last ID %q; want %+v, %q", got, last, tt.want, tt.last)
			}
			for _, src := range sources {
				for _, size := range []int{16, 4096} {
					got, last, err := readAll(t, src.of(tt.in), size, 0)
					if !errors.Is(err, io.EOF) {
						t.Errorf("%s, buffer %d: err = %v, want EOF", src.name, size, err)
					}
					if !reflect.DeepEqual(got, tt.want) || last != tt.last {
						t.Errorf("%s, buffer %d: %+v, last ID %q; want %+v, %q", src.name, size, got, last, tt.want, tt.last)
					}
				}
			}
		})
	}
}

// TestReaderNoLookahead checks that a blank line dispatches at once, even
// after a CR whose LF might follow: a stream that then goes quiet must not
// hold the event back.
func TestReaderNoLookahead(t *testing.T) {
	for _, in := range []string{"data: x\r\r", "data: x\n\n", "data: x\r\n\r\n", "data: x\r\n\r"} {
		pr, pw := io.Pipe()
		p := NewReader(pr)
		go pw.Write([]byte(in)) // then no more bytes until the test ends
		got := make(chan error, 1)
		go func() {
			it, err := p.Next()
			if err == nil && (it.Kind != KindEvent || string(it.Data) != "x") {
				err = errors.New("wrong item " + it.Kind.String())
			}
			got <- err
		}()
		select {
		case err := <-got:
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%q: event not dispatched until more input arrives", in)
		}
		pw.Close()
	}
}

func TestReaderLineTooLong(t *testing.T) {
	const max = 64
	for _, size := range []int{16, 100} {
		for _, src := range sources {
			// Exactly max bytes is allowed, through the spill path too.
			ok := "data: " + strings.Repeat("x", max-6)
			got, _, err := readAll(t, src.of(ok+"\r\n\n"), size, max)
			if !errors.Is(err, io.EOF) || len(got) != 1 || got[0].Data != ok[6:] {
				t.Errorf("%s, buffer %d: line of %d: %+v, %v", src.name, size, max, got, err)
			}
			// One byte more is an error, whether or not it ends.
			for _, tail := range []string{"\n\n", ""} {
				got, _, err = readAll(t, src.of("data: a\n\n"+ok+"y"+tail), size, max)
				if !errors.Is(err, ErrLineTooLong) || len(got) != 1 {
					t.Errorf("%s, buffer %d: line of %d: %+v, %v, want one event and ErrLineTooLong", src.name, size, max+1, got, err)
				}
			}
			// The error is final: the events after the long line are
			// never read.
			p := NewReaderSize(src.of(ok+"y\n\ndata: after\n\n"), size, max)
			for i := range 2 {
				if _, err := p.Next(); !errors.Is(err, ErrLineTooLong) {
					t.Errorf("%s, buffer %d: call %d after a long line: %v, want ErrLineTooLong", src.name, size, i+1, err)
				}
			}
			// A comment counts too.
			if _, _, err = readAll(t, src.of(":"+strings.Repeat("c", max)+"\n"), size, max); !errors.Is(err, ErrLineTooLong) {
				t.Errorf("%s, buffer %d: long comment: %v", src.name, size, err)
			}
		}
	}
}

// endless is a hostile stream: one line that never ends.
type endless struct{ n int }

func (e *endless) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = 'x'
	}
	e.n += len(b)
	return len(b), nil
}

func TestReaderBounded(t *testing.T) {
	const size, max = 512, 10_000
	src := &endless{}
	p := NewReaderSize(src, size, max)
	if _, err := p.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v, want ErrLineTooLong", err)
	}
	if src.n > max+size {
		t.Errorf("read %d bytes of an endless line before giving up, want at most %d", src.n, max+size)
	}
	if _, err := p.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("second Next: %v, want the same error again", err)
	}

	// Many short data lines cannot grow one event without bound either.
	line := "data: " + strings.Repeat("d", 100) + "\n"
	got, _, err := readAll(t, strings.NewReader(strings.Repeat(line, 1000)), size, max)
	if !errors.Is(err, ErrEventTooLarge) || len(got) != 0 {
		t.Errorf("huge event: %d items, %v, want ErrEventTooLarge", len(got), err)
	}
	p = NewReaderSize(strings.NewReader(strings.Repeat(line, 100)+"\ndata: after\n\n"), size, max)
	for i := range 2 {
		if _, err := p.Next(); !errors.Is(err, ErrEventTooLarge) {
			t.Errorf("call %d after a huge event: %v, want ErrEventTooLarge again", i+1, err)
		}
	}
	// Just under the limit is fine: 99 lines of 101 bytes.
	got, _, err = readAll(t, strings.NewReader(strings.Repeat(line, 99)+"\n"), size, max)
	if !errors.Is(err, io.EOF) || len(got) != 1 || len(got[0].Data) != 99*101-1 {
		t.Errorf("event of %d bytes: %d items, %v", 99*101-1, len(got), err)
	}
}

// errAfter returns s and then err.
type errAfter struct {
	s   string
	err error
}

func (e *errAfter) Read(b []byte) (int, error) {
	if e.s == "" {
		return 0, e.err
	}
	n := copy(b, e.s)
	e.s = e.s[n:]
	return n, nil
}

func TestReaderErrors(t *testing.T) {
	boom := errors.New("connection reset")
	got, _, err := readAll(t, &errAfter{"data: a\n\ndata: b\n", boom}, 64, 0)
	if !errors.Is(err, boom) || !reflect.DeepEqual(got, []item{ev("message", "a", "")}) {
		t.Errorf("got %+v, %v; want one event, then the read error", got, err)
	}
	// Data and an error from the same Read: the data counts.
	got, _, err = readAll(t, iotest.DataErrReader(strings.NewReader("data: a\n\n")), 64, 0)
	if !errors.Is(err, io.EOF) || len(got) != 1 {
		t.Errorf("data with EOF: %+v, %v", got, err)
	}
	// A source that never returns anything.
	if _, _, err = readAll(t, &errAfter{"", nil}, 64, 0); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("empty reads: %v, want io.ErrNoProgress", err)
	}
}

func TestReaderReset(t *testing.T) {
	for _, atEOF := range []bool{false, true} {
		// The first stream is left with an unfinished event: after its
		// retry line (Reset mid-stream), or at its end.
		first := "id: 3\ndata: a\n\nid: 4\nevent: x\ndata: partial\nretry: 3000\n"
		p := NewReaderSize(strings.NewReader(first), 16, 0)
		var got []item
		for {
			it, err := p.Next()
			if err != nil {
				break
			}
			got = append(got, toItem(it))
			if it.Kind == KindRetry && !atEOF {
				break
			}
		}
		// A new stream: BOM stripped again, the unfinished event
		// forgotten, the last event ID (3: the 4 was never dispatched)
		// and the retry kept.
		p.Reset(strings.NewReader("\xEF\xBB\xBFdata: b\n\n"))
		for {
			it, err := p.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
			got = append(got, toItem(it))
		}
		want := []item{ev("message", "a", "3"), retry(3 * time.Second), ev("message", "b", "3")}
		if !reflect.DeepEqual(got, want) || p.Retry() != 3*time.Second {
			t.Errorf("reset at EOF %v: got %+v, retry %v; want %+v", atEOF, got, p.Retry(), want)
		}
	}
}

func TestNextEvent(t *testing.T) {
	p := NewReader(strings.NewReader("retry: 1\n: c\nid: 1\nevent: e\ndata: d\n\n"))
	e, err := p.NextEvent()
	if err != nil || e != (Event{Type: "e", Data: "d", ID: "1"}) {
		t.Errorf("NextEvent = %+v, %v", e, err)
	}
	if _, err := p.NextEvent(); !errors.Is(err, io.EOF) {
		t.Errorf("then %v, want EOF", err)
	}
}

// chatStream is n chat message events as the server sends them, with a
// heartbeat now and then.
func chatStream(n int) []byte {
	var b []byte
	b = AppendRetry(b, 2*time.Second)
	b = AppendComment(b, "connected")
	b = AppendEnd(b)
	for i := range n {
		b, _ = AppendEvent(b, "1732650000000-"+itoa(i), "message", chatJSON)
		if i%100 == 99 {
			b = AppendEnd(AppendComment(b, "ping"))
		}
	}
	return b
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// chatJSON is a typical chat message: about 200 bytes of JSON.
var chatJSON = []byte(`{"id":"1732650000000-0","user":"Bob","uid":"bob","room":"main","seq":123456,` +
	`"text":"bench 123 1732650000123456789 deadbeef, and some more words to be typical",` +
	`"time":"2024-11-26T19:40:00.123456789Z"}`)

func TestReaderAllocs(t *testing.T) {
	p := NewReaderSize(bytes.NewReader(bytes.Repeat(chatStream(1000), 10)), 2048, 0)
	for range 10 { // grow the buffers
		if _, err := p.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := p.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per item, want 0", allocs)
	}
}

func BenchmarkReader(b *testing.B) {
	const n = 1000
	stream := chatStream(n)
	r := bytes.NewReader(stream)
	p := NewReaderSize(r, 2048, 0)
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		it, err := p.Next()
		if err == io.EOF {
			r.Reset(stream)
			p.Reset(r)
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		if it.Kind == KindEvent {
			events++
		}
	}
	if events == 0 {
		b.Fatal("no events")
	}
}
