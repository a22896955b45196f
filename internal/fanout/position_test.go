package fanout

import (
	"bytes"
	"testing"

	"chatroom/internal/chat"
)

// wireEvent is a message event of room as the server builds one: its
// single-room id line, then the rest.
func wireEvent(room string, id chat.ID, data string) *Event {
	line := "id: " + string(AppendEntry(nil, room, id)) + "\n"
	return &Event{ID: id, Room: room, IDLen: len(line), Wire: []byte(line + "event: message\ndata: " + data + "\n\n")}
}

// TestPosition: the composite id of a position after a sequence of events,
// and what Wire and AppendWire return for each.
func TestPosition(t *testing.T) {
	id := func(ms, seq uint64) chat.ID { return chat.ID{Ms: ms, Seq: seq} }
	status := &Event{Wire: []byte("event: status\ndata: ok\n\n")}
	typing := &Event{Room: "dev", Wire: []byte("event: typing\ndata: {}\n\n")}
	for _, tc := range []struct {
		name  string
		rooms []string
		start map[string]chat.ID
		evs   []*Event
		want  []string // what is written for each event
		final string
	}{{
		name:  "default room alone: events as they are",
		rooms: []string{chat.DefaultRoom},
		evs:   []*Event{wireEvent("chat", id(1733050000000, 0), "a"), status},
		want: []string{
			"id: 1733050000000-0\nevent: message\ndata: a\n\n",
			"event: status\ndata: ok\n\n",
		},
		final: "1733050000000-0",
	}, {
		name:  "another room alone",
		rooms: []string{"dev"},
		start: map[string]chat.ID{"dev": id(5, 0), "chat": id(9, 9)},
		evs:   []*Event{wireEvent("dev", id(1733050001234, 1), "a")},
		want:  []string{"id: dev=1733050001234-1\nevent: message\ndata: a\n\n"},
		final: "dev=1733050001234-1",
	}, {
		name:  "several rooms: default first, then by name, duplicates once; missing rooms at 0-0",
		rooms: []string{"ops", "dev", chat.DefaultRoom, "dev"},
		start: map[string]chat.ID{chat.DefaultRoom: id(1733050000000, 0), "other": id(1, 1)},
		evs: []*Event{
			wireEvent("dev", id(1733050001234, 1), "a"),
			typing,
			wireEvent("chat", id(1733050002000, 0), "b"),
			status,
			wireEvent("ops", id(1733050003000, 7), "c"),
			wireEvent("other", id(1733050004000, 0), "not on the stream"),
		},
		want: []string{
			"id: 1733050000000-0,dev=1733050001234-1,ops=0-0\nevent: message\ndata: a\n\n",
			"event: typing\ndata: {}\n\n",
			"id: 1733050002000-0,dev=1733050001234-1,ops=0-0\nevent: message\ndata: b\n\n",
			"event: status\ndata: ok\n\n",
			"id: 1733050002000-0,dev=1733050001234-1,ops=1733050003000-7\nevent: message\ndata: c\n\n",
			"id: 1733050002000-0,dev=1733050001234-1,ops=1733050003000-7\nevent: message\ndata: not on the stream\n\n",
		},
		final: "1733050002000-0,dev=1733050001234-1,ops=1733050003000-7",
	}, {
		name:  "no room",
		rooms: nil,
		evs:   []*Event{status},
		want:  []string{"event: status\ndata: ok\n\n"},
		final: "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			viaWire := NewPosition(tc.rooms, tc.start)
			viaAppend := NewPosition(tc.rooms, tc.start)
			var appended []byte
			for i, ev := range tc.evs {
				got := bytes.Join(viaWire.Wire(ev), nil)
				if string(got) != tc.want[i] {
					t.Errorf("Wire of event %d: %q, want %q", i, got, tc.want[i])
				}
				appended = viaAppend.AppendWire(appended, ev)
			}
			if want := bytes.Join(toBytes(tc.want), nil); !bytes.Equal(appended, want) {
				t.Errorf("AppendWire: %q, want %q", appended, want)
			}
			for _, p := range []*Position{viaWire, viaAppend} {
				if got := p.String(); got != tc.final {
					t.Errorf("String: %q, want %q", got, tc.final)
				}
			}
		})
	}
}

func toBytes(ss []string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

// TestPositionWireAllocs: Wire allocates nothing, for one room (the event
// as it is) and, once its id line buffer has grown, for several.
func TestPositionWireAllocs(t *testing.T) {
	one := NewPosition([]string{chat.DefaultRoom}, nil)
	several := NewPosition([]string{chat.DefaultRoom, "dev", "ops"}, nil)
	ev := wireEvent("dev", chat.ID{Ms: 1733050001234, Seq: 1}, "x")
	own := wireEvent(chat.DefaultRoom, chat.ID{Ms: 1733050001234, Seq: 1}, "x")
	several.Wire(ev)
	if n := testing.AllocsPerRun(100, func() { one.Wire(own) }); n != 0 {
		t.Errorf("one room: %v allocations per Wire", n)
	}
	if n := testing.AllocsPerRun(100, func() { several.Wire(ev) }); n != 0 {
		t.Errorf("several rooms: %v allocations per Wire", n)
	}
	if got := one.Wire(own); len(got) != 1 || &got[0][0] != &own.Wire[0] {
		t.Error("a stream of one room does not write the event's own bytes")
	}
}
