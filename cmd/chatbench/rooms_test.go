package main

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"chatroom/internal/chat"
	"chatroom/internal/sse"
)

func TestRoomEntry(t *testing.T) {
	tests := []struct {
		pos, room, want string
		ok              bool
	}{
		{"1733050000000-0", "chat", "1733050000000-0", true},
		{"1733050000000-0", "dev", "", false},
		{"dev=1733050001234-1", "dev", "1733050001234-1", true},
		{"dev=1733050001234-1", "chat", "", false},
		{"1733050000000-0,dev=1733050001234-1,ops=0-0", "chat", "1733050000000-0", true},
		{"1733050000000-0,dev=1733050001234-1,ops=0-0", "dev", "1733050001234-1", true},
		{"1733050000000-0,dev=1733050001234-1,ops=0-0", "ops", "0-0", true},
		{"1733050000000-0,dev=1733050001234-1,ops=0-0", "de", "", false},
		{"devx=5-0,dev=6-0", "dev", "6-0", true},
		{"", "chat", "", false},
	}
	for _, tt := range tests {
		got, ok := roomEntry([]byte(tt.pos), tt.room)
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("roomEntry(%q, %q) = %q, %v; want %q, %v", tt.pos, tt.room, got, ok, tt.want, tt.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { roomEntry([]byte("1-0,a=2-0,b=3-0"), "b") }); n != 0 {
		t.Errorf("roomEntry allocates %v times", n)
	}
}

func TestRoomPath(t *testing.T) {
	for _, tt := range [][3]string{
		{"chat", "post", "/post"}, {"dev", "post", "/r/dev/post"}, {"chat", "leave", "/r/chat/leave"},
		{"dev", "join", "/r/dev/join"}, {"dev", "online", "/r/dev/online"},
	} {
		if got := roomPath(tt[0], tt[1]); got != tt[2] {
			t.Errorf("roomPath(%q, %q) = %q, want %q", tt[0], tt[1], got, tt[2])
		}
	}
}

func names(ns ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range ns {
		m[n] = true
	}
	return m
}

func TestCheckOnline(t *testing.T) {
	want := names("alice", "bob")
	tests := []struct {
		body, err string // err: "" or a substring of the error
	}{
		{`{"room":"dev","users":[{"user":"alice","uid":"alice"},{"user":"bob","uid":"bob"}],"count":2}`, ""},
		{`{"count":2,"users":[{"uid":"bob","user":"bob"},{"user":"alice"}],"room":"dev"}`, ""},
		{`{"room":"dev","users":[{"user":"alice","uid":"alice"}],"count":1}`, "1 of 2 missing (bob), 0 unexpected"},
		{`{"room":"dev","users":[{"user":"alice"},{"user":"bob"},{"user":"eve"}],"count":3}`, "0 of 2 missing, 1 unexpected (eve)"},
		{`{"room":"dev","users":[{"user":"alice"},{"user":"alice"},{"user":"bob"}],"count":3}`, `"alice" listed twice`},
		{`{"room":"dev","users":[{"user":"alice"},{"user":"bob"}],"count":3}`, "count 3 for 2 users"},
		{`{"room":"dev","users":[{"user":"alice"},{"user":"bob"}]}`, "count missing"},
		{`{"room":"ops","users":[{"user":"alice"},{"user":"bob"}],"count":2}`, `says room "ops"`},
		{`{"room":"dev","users":[],"count":0}`, "2 of 2 missing (alice)"},
		{`not json`, "invalid character"},
	}
	for _, tt := range tests {
		err := checkOnline([]byte(tt.body), "dev", want)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("checkOnline(%s) = %v, want %q", tt.body, err, tt.err)
		}
	}
}

// TestOnlineTracker follows an observer's list through the events of a
// room and checks since when it is correct.
func TestOnlineTracker(t *testing.T) {
	tr := newOnlineTracker("dev", names("obs", "a", "b"))
	steps := []struct {
		typ, data string
		since     int64 // correctSince after the event at time i+1
	}{
		{"presence", `{"room":"dev","users":[{"user":"obs","uid":"obs"}],"count":1}`, 0},
		{"join", `{"room":"dev","user":"a","uid":"a"}`, 0},
		{"join", `{"room":"ops","user":"b","uid":"b"}`, 0}, // another room: bad, ignored
		{"join", `{"room":"dev","user":"b","uid":"b"}`, 4},
		{"typing", `{"room":"dev","user":"x","uid":"x"}`, 4}, // not a presence event
		{"join", `{"room":"dev","user":"a","uid":"a"}`, 4},   // again: no change
		{"join", `{"room":"dev","user":"c","uid":"c"}`, 0},   // unexpected
		{"leave", `{"room":"dev","user":"c","uid":"c"}`, 8},
		{"leave", `{"room":"dev","user":"a","uid":"a"}`, 0},
		{"join", `{"room":"dev"`, 0}, // malformed: bad
		{"presence", `{"room":"dev","users":[{"user":"a"},{"user":"b"},{"user":"obs"}],"count":3}`, 11},
	}
	for i, st := range steps {
		tr.apply(st.typ, []byte(st.data), int64(i+1))
		if got := tr.correctSince.Load(); got != st.since {
			t.Fatalf("after step %d (%s %s): correctSince = %d, want %d", i+1, st.typ, st.data, got, st.since)
		}
	}
	if tr.bad != 2 || tr.events != 8 {
		t.Errorf("bad = %d, events = %d; want 2, 8", tr.bad, tr.events)
	}
}

func TestSessionUpdate(t *testing.T) {
	s := session{cookies: []*http.Cookie{{Name: "session", Value: "old"}, {Name: "other", Value: "x"}}}
	s.update([]*http.Cookie{{Name: "session", Value: "new"}, {Name: "other", MaxAge: -1}, {Name: "third", Value: "3"}})
	var got []string
	for _, c := range s.cookies {
		got = append(got, c.Name+"="+c.Value)
	}
	if strings.Join(got, " ") != "session=new third=3" {
		t.Errorf("cookies = %v", got)
	}
}

// roomEvent is message seq of run tag in room as the server sends it on a
// stream whose position is pos.
func roomEvent(pos, room string, seq int, tag string) string {
	text := string(appendBenchText(nil, seq, 1732650000123456789, tag))
	return "id: " + pos + "\nevent: message\ndata: {\"id\":\"1-0\",\"room\":\"" + room + "\",\"seq\":1,\"user\":\"u1\",\"uid\":\"u1\",\"text\":\"" +
		text + "\",\"time\":\"2024-11-26T19:40:00Z\"}\n\n"
}

// TestSubscriberReadRooms feeds a room subscriber's stream through its
// reading code: messages of other rooms, IDs from the room's entry of the
// composite position, presence events.
func TestSubscriberReadRooms(t *testing.T) {
	const tag = "t1"
	st := &runState{tag: []byte(tag), msgs: 6, ids: make([]atomic.Pointer[chat.ID], 6), rooms: []string{"ra", "rb"}}
	s := &subscriber{room: 1, seen: make([]uint64, 1)} // room rb: messages 1, 3, 5
	stream := "retry: 1\n\n" +
		"event: presence\ndata: {\"room\":\"ra\",\"users\":[],\"count\":0}\n\n" + // another room's: not live yet
		roomEvent("rb=5-0", "rb", 1, tag) +
		"event: presence\ndata: {\"room\":\"rb\",\"users\":[],\"count\":0}\n\n" +
		roomEvent("ra=5-1", "ra", 2, tag) + // message of room ra
		roomEvent("rb=5-2", "ra", 3, tag) + // says room ra
		roomEvent("1-0,rb=4-0,zz=9-9", "rb", 5, tag) + // its entry goes back
		roomEvent("rb=6-0", "rb", 5, tag) // duplicate
	p := sse.NewReaderSize(strings.NewReader(stream), 64, maxSSELine)
	_ = s.read(p, st, func() {})
	if s.wrongRoom != 2 || st.unique.Load() != 2 || s.idOrder != 1 || s.dups != 1 || s.liveAt.Load() == 0 {
		t.Errorf("wrongRoom %d unique %d idOrder %d dups %d liveAt %d; want 2 2 1 1 set",
			s.wrongRoom, st.unique.Load(), s.idOrder, s.dups, s.liveAt.Load())
	}
	// An observer follows the list and counts no message.
	o := &subscriber{room: 1, online: newOnlineTracker("rb", names("x"))}
	stream = "retry: 1\n\n" + roomEvent("rb=7-0", "rb", 1, tag) + "event: join\ndata: {\"room\":\"rb\",\"user\":\"x\"}\n\n"
	_ = o.read(sse.NewReaderSize(strings.NewReader(stream), 64, maxSSELine), st, func() {})
	if st.unique.Load() != 2 || o.online.correctSince.Load() == 0 {
		t.Errorf("observer: unique %d, correctSince %d", st.unique.Load(), o.online.correctSince.Load())
	}
}

// TestAnalyzeRooms checks the per-room accounting: a subscriber expects
// exactly its room's accepted messages, and in a storm only those posted
// after its stream went live.
func TestAnalyzeRooms(t *testing.T) {
	ok := func(start int64) postRecord { return postRecord{start: start, end: start + 1, status: "204"} }
	// Messages 0..5 to rooms 0, 1, 0, 1, 0, 1; message 4 failed.
	posts := []postRecord{ok(10), ok(20), ok(30), ok(40), {start: 50, status: "503"}, ok(60)}
	sub := func(room int, live int64, got ...int) *subscriber {
		s := &subscriber{room: room, seen: make([]uint64, 1), conned: true}
		s.liveAt.Store(live)
		for _, q := range got {
			s.seen[0] |= 1 << q
			s.seqs = append(s.seqs, uint32(q))
			s.lats = append(s.lats, 1000)
		}
		return s
	}
	for _, storm := range []bool{false, true} {
		st := &runState{msgs: 6, ids: make([]atomic.Pointer[chat.ID], 6), rooms: []string{"a", "b"}, storm: storm}
		subs := []*subscriber{
			sub(0, 5, 0, 2),     // room 0: all of 0, 2 (4 failed)
			sub(1, 25, 3),       // room 1: 1 and 5 missing; live after 1 was posted
			sub(0, 0, 0),        // room 0, never live: in a storm expects nothing
			sub(1, 45, 1, 3, 5), // room 1, live after 1 and 3: got them anyway
		}
		subs[1].wrongRoom = 1
		res := &result{PostErrors: map[string]int{}}
		analyze(res, subs, posts, st)
		wantExp, wantLoss := int64(2+3+2+3), int64(0+2+1+0)
		if storm {
			wantExp, wantLoss = 2+2+0+1, 0+1+0+0
		}
		if res.Accepted != 5 || res.Expected != wantExp || res.Loss != wantLoss || res.Deliveries != 7 || res.WrongRoom != 1 {
			t.Errorf("storm=%v: accepted %d expected %d loss %d deliveries %d wrongRoom %d; want 5 %d %d 7 1",
				storm, res.Accepted, res.Expected, res.Loss, res.Deliveries, res.WrongRoom, wantExp, wantLoss)
		}
		if got := expectedDeliveries(st, subs, posts, false); got != wantExp {
			t.Errorf("storm=%v: expectedDeliveries = %d, want %d", storm, got, wantExp)
		}
		// With maybe, the failed POST (an answer) still does not count.
		if got := expectedDeliveries(st, subs, posts, true); got != wantExp {
			t.Errorf("storm=%v: expectedDeliveries(maybe) = %d, want %d", storm, got, wantExp)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	medians := []*result{
		{Scenario: "large", Deliveries: 100, ServerUsPerD: 8, P99Ms: 30},
		{Scenario: "rooms", Deliveries: 100, ServerUsPerD: 9, P99Ms: 40},
		{Scenario: "spread", Deliveries: 100, P99Ms: 60, Loss: 2},
		{Scenario: "storm", Subs: 10, Deliveries: 100, P99Ms: 100,
			Storm: &stormResult{Connected: 10, PollSec: 1.5, EventsSec: 6, EventsWrong: 1}},
		{Scenario: "storm", Subs: 10, Deliveries: 100, P99Ms: 100, // in time, but some rooms never correct
			Storm: &stormResult{Connected: 9, PollSec: 1, PollWrong: 1, EventsSec: 1}},
	}
	got := map[string]bool{}
	for _, tg := range checkTargets(medians[len(medians)-1:]) {
		if tg.What == "s to correct online lists (GET)" && tg.Met {
			t.Errorf("%+v met with a room never correct", tg)
		}
		if tg.What == "subscribers not connected" && (tg.Met || tg.Value != 1) {
			t.Errorf("%+v, want 1, missed", tg)
		}
	}
	for _, tg := range checkTargets(medians[:len(medians)-1]) {
		got[tg.Scenario+" "+tg.What] = tg.Met
	}
	want := map[string]bool{
		"rooms lost deliveries": true, "rooms deliveries in another room": true, "rooms p99 ms": true,
		"rooms server µs/delivery (limit: large's)": false,
		"spread lost deliveries":                    false, "spread deliveries in another room": true, "spread p99 ms": false,
		"storm lost deliveries": true, "storm deliveries in another room": true, "storm p99 ms": true,
		"storm subscribers not connected": true, "storm s to correct online lists (GET)": true,
		"storm rooms whose list was never correct (GET)": true, "storm s to correct online lists (observers)": false, // 6 s
		"storm rooms whose list was never correct (observers)": false,
	}
	if len(got) != len(want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	for k, v := range want {
		if m, ok := got[k]; !ok || m != v {
			t.Errorf("target %q: met %v (present %v), want %v", k, m, ok, v)
		}
	}
	// Without large, rooms has no CPU target.
	for _, tg := range checkTargets(medians[1:2]) {
		if strings.Contains(tg.What, "µs") {
			t.Errorf("CPU target without large: %+v", tg)
		}
	}
}

func TestMergeStorms(t *testing.T) {
	rs := []*result{
		{Scenario: "storm", Storm: &stormResult{Connected: 10, PollSec: 1, EventsSec: 3, PollWrong: 0, NoPresence: 1}},
		{Scenario: "storm", Storm: &stormResult{Connected: 8, PollSec: 2, EventsSec: 1, PollWrong: 2, FirstWrong: "x"}},
		{Scenario: "storm", Storm: &stormResult{Connected: 10, PollSec: 9, EventsSec: 2, PollWrong: 1}},
	}
	m := mergeRuns(rs).Storm
	if m == rs[0].Storm || m.Connected != 8 || m.PollSec != 2 || m.EventsSec != 2 || m.PollWrong != 2 || m.NoPresence != 1 || m.FirstWrong != "x" {
		t.Errorf("merged storm = %+v", m)
	}
	if mergeRuns([]*result{{Scenario: "large"}, {Scenario: "large"}}).Storm != nil {
		t.Error("storm figures for large")
	}
}

// readReport reads a -json report.
func readReport(t *testing.T, path string) *report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// TestBenchRoomsAgainstFake runs rooms and spread, shrunk, against the
// fake: each subscriber gets exactly its room's messages.
func TestBenchRoomsAgainstFake(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	out, err := runFake(t, newFakeChat(), "-scenario", "rooms,spread", "-subs", "12", "-rooms", "4", "-json", jsonPath)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	rep := readReport(t, jsonPath)
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	for _, r := range rep.Results {
		// 12 subscribers in 4 rooms: every message reaches 3.
		if r.Rooms != 4 || r.Msgs == 0 || r.Accepted != r.Msgs || r.Expected != int64(3*r.Msgs) ||
			r.Deliveries != r.Expected || r.Loss != 0 || r.WrongRoom != 0 || r.OrderErrs != 0 || r.Storm != nil {
			t.Errorf("%s: %+v", r.Scenario, r)
		}
	}
	if len(rep.Targets) == 0 || !strings.Contains(out, "Targets (medians):") {
		t.Errorf("no targets reported")
	}

	// More rooms than 2 senders may join: the bench takes more senders
	// (the fake, like the server, wants a room joined to post in it and
	// caps the joined rooms at 20).
	out, err = runFake(t, newFakeChat(), "-scenario", "spread", "-subs", "50", "-rooms", "50", "-senders", "2", "-json", jsonPath)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	r := readReport(t, jsonPath).Results[0]
	if r.Senders != 3 || r.Accepted != r.Msgs || r.Deliveries != int64(r.Msgs) || r.Loss != 0 {
		t.Errorf("50 rooms: %d senders, %d of %d accepted %v, %d deliveries, %d lost", r.Senders, r.Accepted, r.Msgs, r.PostErrors, r.Deliveries, r.Loss)
	}
}

// TestSenders checks that with rooms no sender joins more rooms than a
// user may, and that every message's sender has joined its room.
func TestSenders(t *testing.T) {
	tests := []struct{ rooms, msgs, want, senders int }{
		{0, 1000, 10, 10}, {0, 3, 10, 3}, {100, 2000, 10, 10}, {5000, 5000, 10, 250},
		{4, 50, 10, 4}, {50, 100, 2, 3}, {30, 5, 10, 5},
	}
	for _, tt := range tests {
		st := &runState{msgs: tt.msgs}
		if tt.rooms > 0 {
			st.rooms = roomNames("t", tt.rooms)
		}
		n := st.senders(tt.want)
		if n != tt.senders {
			t.Errorf("%d rooms, %d msgs, want %d: %d senders, want %d", tt.rooms, tt.msgs, tt.want, n, tt.senders)
		}
		joined := make([]map[int]bool, n) // as prepare joins them: sender s, rooms r ≡ s (mod S)
		for s := range n {
			joined[s] = map[int]bool{}
			for r := s; r < st.nRooms(); r += n {
				joined[s][r] = true
			}
			if tt.rooms > 0 && len(joined[s]) > senderRooms {
				t.Errorf("%d rooms: sender %d joins %d", tt.rooms, s, len(joined[s]))
			}
		}
		used := map[int]bool{}
		for i := range tt.msgs {
			s := st.senderOf(i, n)
			used[s] = true
			if tt.rooms > 0 && !joined[s][st.roomOf(i)] {
				t.Fatalf("%d rooms: message %d (room %d) from sender %d, not in it", tt.rooms, i, st.roomOf(i), s)
			}
		}
		if len(used) != n {
			t.Errorf("%d rooms, %d msgs: %d of %d senders post", tt.rooms, tt.msgs, len(used), n)
		}
	}
}

func TestBenchRoomsDetectsLeak(t *testing.T) {
	f := newFakeChat()
	f.leakSeq = 5 // to every stream: 9 of the 12 subscribers are in other rooms
	out, err := runFake(t, f, "-scenario", "rooms", "-subs", "12", "-rooms", "4")
	if err == nil || !strings.Contains(err.Error(), "9 deliveries in the wrong room") {
		t.Fatalf("err = %v, want 9 deliveries in the wrong room\n%s", err, out)
	}
}

// TestBenchStormAgainstFake runs a small storm against the fake, correct
// and with online lists that miss users (on GET and in the events) or
// lack join events.
func TestBenchStormAgainstFake(t *testing.T) {
	hide7 := func(u string) bool { return strings.HasPrefix(u, "s") && strings.HasSuffix(u, "7") }
	tests := []struct {
		name                string
		fault               func(*fakeChat)
		pollWrong, evsWrong int
		obsReconnects       int64
	}{
		{"correct", func(*fakeChat) {}, 0, 0, 0},
		// s<tag>7 and s<tag>17 are in rooms 3 and 1 of 4.
		{"users missing", func(f *fakeChat) { f.hide = hide7 }, 2, 2, 0},
		{"no join events", func(f *fakeChat) { f.noJoins = true }, 0, 4, 0},
		// The first stream is observer 0's: it ends after its presence
		// event and one join; the resumed stream's presence event puts the
		// list right.
		{"observer reconnects", func(f *fakeChat) { f.closeAfter = 2 }, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeChat()
			tt.fault(f)
			jsonPath := filepath.Join(t.TempDir(), "r.json")
			out, err := runFake(t, f, "-scenario", "storm", "-subs", "20", "-rooms", "4", "-duration", "1s",
				"-online-timeout", "1s", "-json", jsonPath)
			t.Logf("output:\n%s", out)
			if (err == nil) != (tt.pollWrong+tt.evsWrong == 0) {
				t.Fatalf("err = %v", err)
			}
			rep := readReport(t, jsonPath)
			if len(rep.Results) != 1 || rep.Results[0].Storm == nil {
				t.Fatalf("results %+v", rep.Results)
			}
			r, sr := rep.Results[0], rep.Results[0].Storm
			if sr.Connected != 20 || sr.Observers != 4 || sr.NoPresence != 0 || sr.BadEvents != 0 ||
				sr.PollWrong != tt.pollWrong || sr.EventsWrong != tt.evsWrong || math.IsNaN(sr.PollSec) ||
				sr.ObserverReconnects != tt.obsReconnects {
				t.Errorf("storm = %+v, want %d and %d rooms wrong, %d observer reconnects", sr, tt.pollWrong, tt.evsWrong, tt.obsReconnects)
			}
			if tt.pollWrong+tt.evsWrong > 0 && sr.FirstWrong == "" {
				t.Error("no first wrong list")
			}
			// Messages posted while streams open: some are expected, none lost.
			if r.Expected == 0 || r.Loss != 0 || r.Deliveries < r.Expected || r.WrongRoom != 0 {
				t.Errorf("expected %d loss %d deliveries %d wrong room %d", r.Expected, r.Loss, r.Deliveries, r.WrongRoom)
			}
			if !strings.Contains(out, "storm: 20 of 20 subscribers connected") {
				t.Error("no storm line in the output")
			}
		})
	}
}

// TestPostLatency checks the POST → 204 percentiles: accepted POSTs only.
func TestPostLatency(t *testing.T) {
	var posts []postRecord
	for i := 1; i <= 100; i++ {
		posts = append(posts, postRecord{start: 1e9, end: 1e9 + int64(i)*1e6, status: "204"})
	}
	posts = append(posts, postRecord{start: 1e9, end: 1e9 + 5e9, status: "503"}, postRecord{start: 1e9, status: "timeout"})
	st := &runState{msgs: len(posts), ids: make([]atomic.Pointer[chat.ID], len(posts))}
	res := &result{PostErrors: map[string]int{}}
	analyze(res, nil, posts, st)
	if res.PostP50Ms != 50 || res.PostP99Ms != 99 || res.Accepted != 100 {
		t.Errorf("post p50 %v p99 %v accepted %d; want 50 99 100", res.PostP50Ms, res.PostP99Ms, res.Accepted)
	}
}
