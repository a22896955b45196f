package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"chatroom/internal/chat"
	"chatroom/internal/markup"
	"chatroom/internal/sse"
)

// The fuzz targets below run their seeds (f.Add and testdata/fuzz/<Name>/)
// with every `go test`; `make test` fuzzes each briefly and `make fuzz` longer.

// FuzzMessageEvent: whatever the text and name, a message's SSE encoding is
// one event (one blank line, at the end) with no raw CR, which an
// EventSource reads back as a "message" event with the message's ID whose
// data decodes to the same message.
func FuzzMessageEvent(f *testing.F) {
	f.Add("alice", "hello", uint64(1700000000000), uint64(0), uint64(7), int64(1700000000123456789))
	f.Add("bob", "\n\ndata: injected\nevent: x", uint64(1), uint64(1), uint64(1), int64(0))
	f.Add("eve\r\nid: 1", "a\r\n\r\nretry: 1\rid: 2", uint64(1<<64-1), uint64(1<<64-1), uint64(1<<64-1), int64(-1))
	f.Add("", "", uint64(0), uint64(0), uint64(0), int64(1<<63-1))
	f.Add("x", "\u2028\u2029</script>\"\\", uint64(5), uint64(9), uint64(2), int64(-1<<63))
	md := markup.New() // one renderer, as the server has
	f.Fuzz(func(t *testing.T, user, text string, ms, seq, roomSeq uint64, nanos int64) {
		id := chat.ID{Ms: ms, Seq: seq}
		if id.IsZero() {
			id.Seq = 1 // Redis never issues 0-0
		}
		m := chat.Message{ID: id.String(), Room: chat.DefaultRoom, Seq: roomSeq, User: user, UID: strings.ToLower(user), Text: text, Time: time.Unix(0, nanos).UTC()}
		ev := messageEvent(md, m)
		if ev.ID != id {
			t.Fatalf("event ID %v, want %v", ev.ID, id)
		}
		wire := ev.Wire
		if bytes.ContainsRune(wire, '\r') || !bytes.HasSuffix(wire, []byte("\n\n")) || bytes.Count(wire, []byte("\n\n")) != 1 {
			t.Fatalf("not exactly one event without CR: %q", wire)
		}
		got, err := sse.NewReader(bytes.NewReader(wire)).NextEvent()
		if err != nil || got.Type != "message" || got.ID != id.String() {
			t.Fatalf("read back %+v, %v; want a message event with id %s", got, err, id)
		}
		back, err := decodeEvent(sseEvent{ID: got.ID, Event: got.Type, Data: got.Data})
		if err != nil {
			t.Fatalf("data %q: %v", got.Data, err)
		}
		if back.ID != m.ID || back.Seq != m.Seq || back.Room != m.Room || !back.Time.Equal(m.Time) {
			t.Fatalf("decoded %+v from %+v", back, m)
		}
		// JSON replaces invalid UTF-8 with U+FFFD; texts that reach the
		// wire have passed CleanName/CleanMessage and are valid.
		if utf8.ValidString(user) && utf8.ValidString(text) && (back.Text != m.Text || back.User != m.User || back.UID != m.UID) {
			t.Fatalf("decoded %+v, want %+v", back, m)
		}
	})
}
