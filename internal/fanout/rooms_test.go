package fanout

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"chatroom/internal/chat"
	"chatroom/internal/sse"
)

// positionModel is the tests' own account of a stream's composite position,
// written from the spec and not from Position: entries for the default room
// bare, the others "<room>=<ms>-<seq>", the default room first, then by
// name, "0-0" before a room's first message.
type positionModel struct {
	rooms []string          // the stream's rooms in that order
	at    map[string]string // room -> its newest "<ms>-<seq>" sent
	sent  string            // the last id sent to the client; "" before the first
}

func newPositionModel(rooms []string, start map[string]chat.ID) *positionModel {
	m := &positionModel{at: map[string]string{}}
	var others []string
	for _, room := range rooms {
		if _, dup := m.at[room]; dup {
			continue
		}
		m.at[room] = "0-0"
		if id, ok := start[room]; ok {
			m.at[room] = fmt.Sprintf("%d-%d", id.Ms, id.Seq)
		}
		if room == chat.DefaultRoom {
			m.rooms = append(m.rooms, room)
		} else {
			others = append(others, room)
		}
	}
	sort.Strings(others)
	m.rooms = append(m.rooms, others...)
	return m
}

func (m *positionModel) composite() string {
	var entries []string
	for _, room := range m.rooms {
		if room == chat.DefaultRoom {
			entries = append(entries, m.at[room])
		} else {
			entries = append(entries, room+"="+m.at[room])
		}
	}
	return strings.Join(entries, ",")
}

// sent records that the message with entry (its single-room form, as in
// its data) was sent and returns the id the client should have now.
func (m *positionModel) message(entry string) string {
	room, id, ok := strings.Cut(entry, "=")
	if !ok {
		room, id = chat.DefaultRoom, entry
	}
	if _, on := m.at[room]; !on {
		return "a message of room " + room + ", which is not on the stream"
	}
	m.at[room] = id
	m.sent = m.composite()
	return m.sent
}

// checkHistory reads everything a client received with the sse package's
// Reader, as an EventSource would, and checks the whole history: the events
// (a message by its entry, another event as "type:data") are exactly want,
// in order, and after each the client's last event ID is what the model
// says: the composite position after a message, unchanged after any other
// event. The stream must also parse strictly (parseSSE).
func checkHistory(t *testing.T, raw []byte, m *positionModel, want []string) {
	t.Helper()
	evs, _ := parseSSE(raw)
	for i, ev := range evs {
		if ev.Type == "malformed" {
			t.Fatalf("event %d of the stream is malformed: %q", i, raw[:min(len(raw), 200)])
		}
	}
	r := sse.NewReader(bytes.NewReader(raw))
	var got []string
	wrongIDs := 0
	for {
		ev, err := r.NextEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		what, wantID := ev.Type+":"+ev.Data, m.sent
		if ev.Type == "message" {
			what, _, _ = strings.Cut(ev.Data, " ")
			wantID = m.message(what)
		}
		got = append(got, what)
		if ev.ID != wantID {
			if wrongIDs++; wrongIDs <= 5 {
				t.Errorf("event %d (%s): the client's last event ID is %q, want %q", len(got)-1, what, ev.ID, wantID)
			}
		}
	}
	if wrongIDs > 0 {
		t.Errorf("%d of %d events left the client at a wrong position", wrongIDs, len(got))
	}
	if !slices.Equal(got, want) {
		i := firstDiff(got, want)
		t.Fatalf("got %d events, want %d; first difference at %d: %q, want %q",
			len(got), len(want), i, got[i:min(len(got), i+3)], want[i:min(len(want), i+3)])
	}
}

// entryOf is how checkHistory names a message event: its room's entry.
func entryOf(ev *Event) string { return string(AppendEntry(nil, ev.Room, ev.ID)) }

// awaitEvents waits until the client has n complete events, or its stream
// ended.
func awaitEvents(c *client, n int) {
	c.t.Helper()
	c.await(fmt.Sprintf("%d events", n), func(evs []sseEvent, ended bool) bool { return len(evs) >= n || ended })
}

// TestMultiRoomDelivery: streams of several rooms, one room and none, in
// both modes, all reading. Each gets every message of each of its rooms
// exactly once, in the order broadcast, never one of another room, and
// every event for all streams once; a stream of several rooms carries its
// composite position in each message's id. Its rooms are given unsorted
// and with a duplicate, and one of them ("art") sorts before the default
// room by name.
func TestMultiRoomDelivery(t *testing.T) {
	modes(t, testConfig(), socketOpts{}, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		type stream struct {
			c     *client
			on    map[string]bool
			model *positionModel
			want  []string
		}
		var streams []*stream
		for i, rooms := range [][]string{{"ops", "chat", "dev", "dev", "art"}, {"dev"}, {"other"}, {"chat"}, nil} {
			_, c := open(rooms, fmt.Sprint("s", i), socketOpts{}, nil)
			st := &stream{c: c.start(), on: map[string]bool{}, model: newPositionModel(rooms, nil)}
			for _, room := range rooms {
				st.on[room] = true
			}
			streams = append(streams, st)
		}
		toAll := func(what string) {
			for _, st := range streams {
				st.want = append(st.want, what)
			}
		}
		rooms := []string{"chat", "dev", "ops", "art", "other"}
		rnd := rand.New(rand.NewPCG(1, 2))
		const n = 800
		for i := 1; i <= n; i++ {
			room := rooms[rnd.IntN(len(rooms))]
			ev := roomMessage(room, i, 60+rnd.IntN(1200))
			h.Broadcast(room, ev)
			for _, st := range streams {
				if st.on[room] {
					st.want = append(st.want, entryOf(ev))
				}
			}
			switch {
			case i%100 == 0:
				h.BroadcastAll(notice(fmt.Sprint(i)))
				toAll("notice:" + fmt.Sprint(i))
			case i == 250:
				h.SetDegraded(true)
				toAll("status:degraded")
			case i == 550:
				h.SetDegraded(false)
				toAll("status:ok")
			}
		}
		var delivered int64
		for _, st := range streams {
			awaitEvents(st.c, len(st.want))
			checkHistory(t, st.c.raw(), st.model, st.want)
			delivered += int64(len(st.want))
		}
		st := h.Stats()
		if st.Streams != 5 || st.Rooms != 5 || st.Evictions != 0 || st.Delivered != delivered {
			t.Fatalf("stats %+v, want 5 streams, 5 rooms, %d delivered", st, delivered)
		}
	})
}

// TestMultiRoomPartialWrites: a stream of several rooms whose socket takes
// a few KiB at a time, so that nearly every write is cut short somewhere
// (in an id line or in the rest of an event) and a pooled stream is
// written from its drain goroutine: the client still sees every event
// once, intact, with the composite position after it, and once everything
// is written the queue's counts of events and bytes are back to zero.
func TestMultiRoomPartialWrites(t *testing.T) {
	modes(t, testConfig(), smallBuffers(), func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		rooms := []string{"chat", "dev", "ops"}
		s, c := open(rooms, "s", smallBuffers(), nil)
		rnd := rand.New(rand.NewPCG(3, 4))
		var want []string
		const n = 1000 // some 270 KB
		for i := 1; i <= n; i++ {
			room := rooms[rnd.IntN(len(rooms))]
			size := 60 + rnd.IntN(300) // id lines are a good part of each event
			if i%50 == 0 {
				size = 4096
			}
			ev := roomMessage(room, i, size)
			h.Broadcast(room, ev)
			want = append(want, entryOf(ev))
			if i%200 == 0 {
				h.BroadcastAll(notice(fmt.Sprint(i)))
				want = append(want, "notice:"+fmt.Sprint(i))
			}
		}
		// Events taken by the writer and not written: it waits on the
		// full socket (a pooled stream on its drain goroutine).
		eventually(t, never, "the writer waiting on the full socket", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.q.events > len(s.q.evs) && (s.mode == Goroutine || s.state == draining)
		})
		c.start()
		// A bulk transfer through small buffers: bounded generously for a
		// busy machine.
		c.awaitWithin(time.Minute, "every event", func(evs []sseEvent, ended bool) bool { return len(evs) >= len(want) || ended })
		checkHistory(t, c.raw(), newPositionModel(rooms, nil), want)
		eventually(t, never, "the queue's counts back to zero", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.q.events == 0 && s.q.bytes == 0
		})
		if st := h.Stats(); st.Evictions != 0 || st.Streams != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSkipUpToPerRoom: a stream of two rooms resumes from a position; the
// handler replays each room from there (with the position, which it then
// hands over) while live messages of both queue, and marks each room's
// replay with SkipUpTo. Each room's queued and late messages up to its own
// replay are dropped, exactly those; other events stay in their place; the
// ids go on from where the replay left the position.
func TestSkipUpToPerRoom(t *testing.T) {
	modes(t, testConfig(), socketOpts{}, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		rooms := []string{"dev", "chat"}
		start := map[string]chat.ID{chat.DefaultRoom: {Ms: 2}}
		var want []string
		_, c := open(rooms, "s", socketOpts{}, func(s *Subscriber, replay io.Writer) {
			for i := 1; i <= 10; i++ { // live, while the replay runs
				h.Broadcast("chat", roomMessage("chat", i, 100))
				h.Broadcast("dev", roomMessage("dev", i, 100))
				if i == 3 || i == 8 {
					h.BroadcastAll(notice(fmt.Sprint(i)))
				}
			}
			pos := NewPosition(rooms, start)
			var page []byte
			for _, ev := range []*Event{
				roomMessage("chat", 3, 100), roomMessage("chat", 4, 100), roomMessage("chat", 5, 100),
				roomMessage("chat", 6, 100), roomMessage("dev", 1, 100), roomMessage("dev", 2, 100),
				roomMessage("dev", 3, 100),
			} {
				page = pos.AppendWire(page, ev)
				want = append(want, entryOf(ev))
			}
			if _, err := replay.Write(page); err != nil {
				t.Error(err)
			}
			s.SkipUpTo("chat", chat.ID{Ms: 6})
			s.SkipUpTo("dev", chat.ID{Ms: 3})
			s.SkipUpTo("ops", chat.ID{Ms: 100}) // not on the stream: ignored
			s.SetPosition(pos)
		})
		c.start()
		h.Broadcast("chat", roomMessage("chat", 5, 100)) // covered by the chat replay, though late
		h.Broadcast("dev", roomMessage("dev", 2, 100))   // likewise for dev
		h.Broadcast("dev", roomMessage("dev", 11, 100))
		h.Broadcast("chat", roomMessage("chat", 11, 100))
		h.BroadcastAll(notice("end"))
		for i := 1; i <= 10; i++ {
			if i > 6 {
				want = append(want, "chat="+fmt.Sprint(i)+"-0")
			}
			if i > 3 {
				want = append(want, "dev="+fmt.Sprint(i)+"-0")
			}
			if i == 3 || i == 8 {
				want = append(want, "notice:"+fmt.Sprint(i))
			}
		}
		want = append(want, "dev=11-0", "chat=11-0", "notice:end")
		for i, w := range want { // the default room's entries are bare
			want[i] = strings.TrimPrefix(w, "chat=")
		}
		awaitEvents(c, len(want))
		checkHistory(t, c.raw(), newPositionModel(rooms, start), want)
		// Queued before SkipUpTo: 22; after it: 4 of which 2 not covered, and the notice.
		if st := h.Stats(); st.Delivered != 25 {
			t.Fatalf("delivered %d, want 25", st.Delivered)
		}
	})
}

// TestRegistryRooms: subscribers of random sets of rooms come and go in a
// random order; after each change every room's list of the registry holds
// exactly that room's subscribers, each once and knowing its place,
// Stats.Rooms counts the rooms with a stream, and a broadcast to a room
// reaches exactly its subscribers.
func TestRegistryRooms(t *testing.T) {
	h, _ := startHub(t, testConfig())
	names := []string{"chat", "dev", "ops", "a", "b", "z"}
	rnd := rand.New(rand.NewPCG(5, 6))
	open := map[*Subscriber]bool{}
	check := func(step int) {
		t.Helper()
		h.mu.RLock()
		defer h.mu.RUnlock()
		want := map[string][]*Subscriber{}
		for s := range open {
			for _, room := range s.rooms {
				want[room] = append(want[room], s)
			}
		}
		if len(h.reg.rooms) != len(want) {
			t.Fatalf("step %d: the registry has %d rooms, want %d", step, len(h.reg.rooms), len(want))
		}
		for room, subs := range h.reg.rooms {
			if len(subs) != len(want[room]) {
				t.Fatalf("step %d: room %s lists %d subscribers, want %d", step, room, len(subs), len(want[room]))
			}
			for j, s := range subs {
				k, ok := roomIndex(s.rooms, room)
				if !ok || !open[s] || s.roomIdx[k] != j {
					t.Fatalf("step %d: room %s lists a subscriber that is not in it, or does not know its place", step, room)
				}
			}
		}
		if len(h.reg.all) != len(open) {
			t.Fatalf("step %d: %d streams in all, want %d", step, len(h.reg.all), len(open))
		}
		for j, s := range h.reg.all {
			if !open[s] || s.allIdx != j {
				t.Fatalf("step %d: the list of all streams is wrong at %d", step, j)
			}
		}
	}
	for step := range 400 {
		if len(open) < 5 || len(open) < 30 && rnd.IntN(2) == 0 {
			var rooms []string
			for range rnd.IntN(5) {
				rooms = append(rooms, names[rnd.IntN(len(names))])
			}
			s, err := h.Subscribe(rooms, fmt.Sprint(step), Goroutine, nil)
			if err != nil {
				t.Fatal(err)
			}
			open[s] = true
		} else {
			for s := range open { // some open subscriber
				s.Cancel()
				delete(open, s)
				break
			}
		}
		check(step)
		room := names[rnd.IntN(len(names))]
		before := h.Stats().Delivered
		h.Broadcast(room, roomMessage(room, step+1, 100))
		reached := 0
		for s := range open {
			if slices.Contains(s.rooms, room) {
				reached++
			}
		}
		st := h.Stats()
		if st.Delivered-before != int64(reached) {
			t.Fatalf("step %d: a broadcast to %s reached %d streams, want %d", step, room, st.Delivered-before, reached)
		}
		if rooms := len(h.reg.rooms); st.Rooms != rooms || st.Streams != len(open) {
			t.Fatalf("step %d: stats %+v, want %d rooms and %d streams", step, st, rooms, len(open))
		}
	}
	for s := range open {
		s.Cancel()
	}
	if st := h.Stats(); st.Rooms != 0 || st.Streams != 0 {
		t.Fatalf("stats after the last Cancel %+v", st)
	}
}

// TestStatsRooms: Stats.Rooms counts the rooms with at least one stream,
// each once however many streams it has; a stream of no room counts as a
// stream and not as a room.
func TestStatsRooms(t *testing.T) {
	h, _ := startHub(t, testConfig())
	sub := func(rooms ...string) *Subscriber {
		t.Helper()
		s, err := h.Subscribe(rooms, "s", Pooled, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expect := func(streams, rooms int) {
		t.Helper()
		if st := h.Stats(); st.Streams != streams || st.Rooms != rooms {
			t.Fatalf("%d streams in %d rooms, want %d in %d", st.Streams, st.Rooms, streams, rooms)
		}
	}
	a := sub("chat", "dev")
	expect(1, 2)
	b := sub("dev")
	expect(2, 2)
	c := sub()
	expect(3, 2)
	d := sub("ops", "ops")
	expect(4, 3)
	a.Cancel()
	expect(3, 2) // dev still has b
	b.Cancel()
	expect(2, 1)
	d.Cancel()
	expect(1, 0)
	c.Cancel()
	expect(0, 0)
}

// TestSetPositionMisuse: a position of other rooms than the stream's is
// logged, and the stream goes on from its entries of the stream's rooms;
// a position handed over after Attach is logged and ignored (the writers
// own the stream's position by then).
func TestSetPositionMisuse(t *testing.T) {
	h, logs := startHub(t, testConfig())
	rooms := []string{"chat", "dev"}
	s, c := pooled(t, h, rooms, "s", socketOpts{}, func(s *Subscriber, _ io.Writer) {
		s.SetPosition(NewPosition([]string{"dev", "ops"}, map[string]chat.ID{"dev": {Ms: 7}, "ops": {Ms: 9}}))
	})
	s.SetPosition(NewPosition(rooms, map[string]chat.ID{"chat": {Ms: 100}, "dev": {Ms: 100}}))
	c.start()
	ev := roomMessage("chat", 1, 100)
	h.Broadcast("chat", ev)
	awaitEvents(c, 1)
	checkHistory(t, c.raw(), newPositionModel(rooms, map[string]chat.ID{"dev": {Ms: 7}}), []string{entryOf(ev)})
	for _, msg := range []string{"fanout: SetPosition of other rooms than the stream's", "fanout: SetPosition after Attach or Serve"} {
		if n := logs.count(slog.LevelError, msg, nil); n != 1 {
			t.Errorf("%d errors %q logged, want 1", n, msg)
		}
	}
}
