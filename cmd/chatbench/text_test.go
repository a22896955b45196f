package main

import (
	"bytes"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"chatroom/internal/chat"
	"chatroom/internal/sse"
)

func TestExtractText(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`{"id":"1-0","user":"a","text":"bench 1 2 x","time":"t"}`, "bench 1 2 x", true},
		{`{"text": "spaced"}`, "spaced", true},
		{`{"text":"esc \" quote","x":1}`, `esc \" quote`, true},
		{`{"user":"a"}`, "", false},
		{`{"text":123}`, "", false},
		{`{"text":"unterminated`, "", false},
		{`{"text":`, "", false},
		// Messages will carry "room" and "seq" too, before or after "text".
		{`{"id":"1-0","room":"main","seq":42,"user":"a","text":"bench 1 2 x","time":"t"}`, "bench 1 2 x", true},
		{`{"text":"bench 1 2 x","room":"main","seq":42}`, "bench 1 2 x", true},
		{`{"seq":-1.5e3,"room":"r","text":"t","ok":true,"n":null}`, "t", true},
		{` { "seq" : 7 , "text" : "t" } `, "t", true},
		// "text" nested, or inside a string, is not the member.
		{`{"meta":{"text":"nested","a":[{"text":"deep"}]},"text":"top"}`, "top", true},
		{`{"list":["text","\"text\":\"x\""],"text":"top"}`, "top", true},
		{`{"user":"\"text\":\"forged\"","text":"real"}`, "real", true},
		{`{"room":"main\\","text":"after escaped backslash"}`, "after escaped backslash", true},
		{`{"meta":{"text":"nested"}}`, "", false},
		{`{"user":"\"text\":\"forged\""}`, "", false},
		{`{"texts":"no","textx":"no"}`, "", false},
		{`{"text":"first","text":"second"}`, "first", true},
		{`{"text":""}`, "", true},
		{`["text","x"]`, "", false},
		{`"text":"x"`, "", false},
		{`{"a" "text":"x"}`, "", false},
		{`{"a":,"text":"x"}`, "", false},
		{`{"a":{"b":1,"text":"x"}`, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := extractText([]byte(tt.in))
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("extractText(%s) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBenchText(t *testing.T) {
	b := appendBenchText(nil, 42, 1732650000123456789, "deadbeef")
	if string(b) != "bench 42 1732650000123456789 deadbeef" {
		t.Fatalf("text = %q", b)
	}
	seq, ns, tag, ok := parseBenchText(b)
	if !ok || seq != 42 || ns != 1732650000123456789 || string(tag) != "deadbeef" {
		t.Fatalf("parse = %d %d %q %v", seq, ns, tag, ok)
	}
	for _, bad := range []string{"", "hello", "bench ", "bench x 1 t", "bench 1", "bench 1 2", "bench 1 x t",
		"bench 99999999999999999999 1 t"} {
		if _, _, _, ok := parseBenchText([]byte(bad)); ok {
			t.Errorf("parseBenchText(%q) ok, want failure", bad)
		}
	}
	if got := appendBenchText(nil, 0, 0, ""); string(got) != "bench 0 0 " {
		t.Errorf("appendBenchText(0, 0) = %q", got)
	}
}

// benchEvent is message seq of run tag as the chat server sends it.
func benchEvent(id string, seq int, tag string) string {
	text := string(appendBenchText(nil, seq, 1732650000123456789, tag))
	return "id: " + id + "\nevent: message\ndata: {\"id\":\"" + id + "\",\"user\":\"u1\",\"uid\":\"u1\",\"text\":\"" +
		text + "\",\"time\":\"2024-11-26T19:40:00Z\"}\n\n"
}

// TestSubscriberRead feeds streams through the subscriber's reading code
// and checks what it records.
func TestSubscriberRead(t *testing.T) {
	const tag = "t1"
	tests := []struct {
		name                       string
		streams                    []string // one per subscriber, read in order
		unique, dups, order, idErr int64
		foreign, discon            int64
	}{
		{"in order",
			[]string{"retry: 1\n: connected\n\n" + benchEvent("5-0", 0, tag) + benchEvent("5-1", 1, tag) + benchEvent("6-0", 2, tag)},
			3, 0, 0, 0, 0, 0},
		{"duplicate repeats an ID",
			[]string{"retry: 1\n\n" + benchEvent("5-0", 0, tag) + benchEvent("5-0", 0, tag)},
			1, 1, 1, 0, 0, 0},
		{"ID going back is an order error",
			[]string{"retry: 1\n\n" + benchEvent("6-0", 0, tag) + benchEvent("5-9", 1, tag)},
			2, 0, 1, 0, 0, 0},
		{"same message, different IDs on two streams",
			[]string{"retry: 1\n\n" + benchEvent("5-0", 0, tag), "retry: 1\n\n" + benchEvent("5-1", 0, tag)},
			2, 0, 0, 1, 0, 0},
		{"other runs and non-bench events are foreign; others counted",
			[]string{"retry: 1\n\n" + benchEvent("5-0", 0, "other") + "event: message\ndata: {\"user\":\"x\"}\n\n" +
				"event: disconnect\ndata: {\"reason\":\"slow\"}\n\n"},
			0, 0, 0, 0, 2, 1},
		{"servers with other IDs get no ID checks",
			[]string{"retry: 1\n\n" + benchEvent("b", 0, tag) + benchEvent("a", 1, tag)},
			2, 0, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &runState{tag: []byte(tag), msgs: 4, ids: make([]atomic.Pointer[chat.ID], 4)}
			var dups, order, foreign, discon int64
			for _, stream := range tt.streams {
				s := &subscriber{seen: make([]uint64, 1)}
				connected := 0
				p := sse.NewReaderSize(strings.NewReader(stream), 64, maxSSELine)
				_ = s.read(p, st, func() { connected++ })
				if connected != 1 || !s.conned {
					t.Errorf("connected called %d times", connected)
				}
				dups, order, foreign, discon = dups+s.dups, order+s.idOrder, foreign+s.foreign, discon+s.discon
			}
			if got := st.unique.Load(); got != tt.unique || dups != tt.dups || order != tt.order ||
				st.idErrs.Load() != tt.idErr || foreign != tt.foreign || discon != tt.discon {
				t.Errorf("unique %d dups %d order %d idErrs %d foreign %d disconnects %d; want %d %d %d %d %d %d",
					got, dups, order, st.idErrs.Load(), foreign, discon,
					tt.unique, tt.dups, tt.order, tt.idErr, tt.foreign, tt.discon)
			}
		})
	}
}

func TestReadAllocs(t *testing.T) {
	var stream bytes.Buffer
	for i := range 200 {
		stream.WriteString(benchEvent("1732650000000-"+strconv.Itoa(i), i, "ab"))
		stream.WriteString(": ping\n\n")
	}
	p := sse.NewReaderSize(bytes.NewReader(stream.Bytes()), 1024, maxSSELine)
	if _, err := p.Next(); err != nil { // grow the buffers
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		it, err := p.Next()
		if err != nil {
			t.Fatal(err)
		}
		if it.Kind != sse.KindEvent {
			return
		}
		if _, ok := extractText(it.Data); !ok {
			t.Fatal("no text")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per item, want 0", allocs)
	}
}

// BenchmarkDelivery is the generator's whole cost of one delivery once
// the bytes are read: parse the event, find the text, check the ID and
// record it.
func BenchmarkDelivery(b *testing.B) {
	const n = 1000
	var stream bytes.Buffer
	for i := range n {
		stream.WriteString(benchEvent("1732650000000-"+strconv.Itoa(i), i, "ab"))
	}
	r := bytes.NewReader(stream.Bytes())
	p := sse.NewReaderSize(r, 2048, maxSSELine)
	st := &runState{tag: []byte("ab"), msgs: n, ids: make([]atomic.Pointer[chat.ID], n)}
	s := &subscriber{seen: make([]uint64, (n+63)/64), seqs: make([]uint32, 0, n), lats: make([]uint32, 0, n)}
	b.ReportAllocs()
	for b.Loop() {
		it, err := p.Next()
		if err != nil { // start the stream again, as a new subscriber
			r.Reset(stream.Bytes())
			p.Reset(r)
			clear(s.seen)
			s.seqs, s.lats, s.lastID = s.seqs[:0], s.lats[:0], chat.ID{}
			continue
		}
		s.onMessage(it, st, 1732650000123456789)
	}
	if s.dups+s.idOrder+st.idErrs.Load() != 0 {
		b.Fatalf("dups %d, order %d, id errors %d", s.dups, s.idOrder, st.idErrs.Load())
	}
}
