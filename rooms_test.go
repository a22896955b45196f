package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// postIn sends a message in room and fails the test unless it gets 204.
func (c *chatClient) postIn(room, text string) {
	c.t.Helper()
	resp := c.postForm(roomURL(room, "post"), url.Values{"message": {text}})
	if resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("post %q in %s: status %d: %s", text, room, resp.StatusCode, resp.body)
	}
}

// join joins room and fails the test unless it gets 204.
func (c *chatClient) join(rooms ...string) {
	c.t.Helper()
	for _, room := range rooms {
		resp := c.postForm("/r/"+room+"/join", nil)
		if resp.StatusCode != http.StatusNoContent {
			c.t.Fatalf("join %s: status %d: %s", room, resp.StatusCode, resp.body)
		}
	}
}

// byRoom groups message texts by room, in arrival order.
func byRoom(msgs []chat.Message) map[string][]string {
	out := map[string][]string{}
	for _, m := range msgs {
		out[m.Room] = append(out[m.Room], m.Text)
	}
	return out
}

// collectWithIDs is collectMessages that also returns each event's id: the
// position a reconnecting EventSource would send after it.
func (s *sseStream) collectWithIDs(t testing.TB, n int, timeout time.Duration) ([]chat.Message, []string) {
	t.Helper()
	var msgs []chat.Message
	var ids []string
	deadline := time.After(timeout)
	for len(msgs) < n {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				return msgs, ids
			}
			if ev.Event != "message" {
				continue
			}
			var m chat.Message
			if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
				t.Fatalf("bad message %+v: %v", ev, err)
			}
			msgs = append(msgs, m)
			ids = append(ids, ev.ID)
		case <-deadline:
			return msgs, ids
		}
	}
	return msgs, ids
}

// A message posted in one room never reaches another, on any instance, and
// each room's history and resume work across instances; run on one Redis
// and on a 3-master cluster whose rooms hash to different slots.
func TestRoomsIsolatedAcrossInstances(t *testing.T) {
	t.Run("redis", func(t *testing.T) { testRoomsIsolated(t, redistest.Start(t).URL(), nil) })
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3)
		testRoomsIsolated(t, cl.URL(), cl)
	})
}

func testRoomsIsolated(t *testing.T, redisURL string, cl *redistest.Cluster) {
	rooms := []string{"dev", "ops", "web"}
	if cl != nil { // rooms on three different masters
		rooms = rooms[:0]
		seen := map[string]bool{}
		for i := 0; len(rooms) < 3; i++ {
			r := fmt.Sprint("room", i)
			if m := cl.MasterOf(t, broker.Channel(r)).Addr(); !seen[m] {
				seen[m] = true
				rooms = append(rooms, r)
			}
		}
	}
	a := startServer(t, redisURL, "-rate-posts", "0")
	b := startServer(t, redisURL, "-rate-posts", "0")
	// alice (on a) is in the first room only; bob (on b) in all three.
	alice := login(t, a.URL, "alice")
	alice.join(rooms[0])
	alice.postForm("/r/chat/leave", nil)
	bob := login(t, b.URL, "bob")
	bob.join(rooms...)
	sa := alice.openStream("", "")
	sb := bob.openStream("", "")

	var want []string
	for i := range 3 {
		for j, r := range rooms {
			text := fmt.Sprintf("%s-%d", r, i)
			if j%2 == 0 {
				alice.postIn(rooms[0], "a-"+text) // alice posts in her room only
				want = append(want, "a-"+text)
			}
			bob.postIn(r, text)
		}
	}
	// Bob sees everything per room in order; alice only her room's.
	gotB := byRoom(sb.collectMessages(t, 9+len(want), 10*time.Second))
	for i, r := range rooms {
		var w []string
		for k := range 3 {
			if i == 0 {
				for j := range rooms {
					if j%2 == 0 {
						w = append(w, fmt.Sprintf("a-%s-%d", rooms[j], k))
					}
				}
			}
			w = append(w, fmt.Sprintf("%s-%d", r, k))
		}
		if i == 0 {
			w = interleave(gotB[r], w)
		}
		if !slices.Equal(gotB[r], w) {
			t.Fatalf("bob's %s: %q, want %q", r, gotB[r], w)
		}
	}
	gotA := sa.collectMessages(t, 3+len(want), 10*time.Second)
	for _, m := range gotA {
		if m.Room != rooms[0] || !strings.HasPrefix(m.Text, rooms[0]) && !strings.HasPrefix(m.Text, "a-") {
			t.Fatalf("alice, in %s only, got %+v", rooms[0], m)
		}
	}
	if len(gotA) != 3+len(want) {
		t.Fatalf("alice got %d messages, want %d", len(gotA), 3+len(want))
	}
	// Nothing else arrives at alice's stream (a message of another room
	// would come after the ones above).
	bob.postIn(rooms[1], "late-other")
	bob.postIn(rooms[0], "late-mine")
	if late := sa.collectMessages(t, 1, 10*time.Second); len(late) != 1 || late[0].Text != "late-mine" {
		t.Fatalf("alice's next message: %+v, want late-mine", late)
	}

	// History per room, rendered on the other instance.
	page := bob.withBase(a.URL).get("/r/" + rooms[1])
	if page.StatusCode != 200 || !strings.Contains(page.body, rooms[1]+"-2") || strings.Contains(page.body, rooms[2]+"-2") {
		t.Fatalf("page of %s on instance a: status %d; has its own history %v, another room's %v", rooms[1],
			page.StatusCode, strings.Contains(page.body, rooms[1]+"-2"), strings.Contains(page.body, rooms[2]+"-2"))
	}
}

// interleave returns want ordered as got orders its elements (both rooms'
// posters race, so only each poster's own order is fixed); elements of got
// not in want are kept so the comparison fails on them.
func interleave(got, want []string) []string {
	if len(got) != len(want) {
		return want
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			return want
		}
	}
	return got
}

// One stream carries all five rooms of a user; a reconnect with its
// composite Last-Event-ID, after messages in three of them, replays exactly
// those, in order per room, without duplicates.
func TestOneStreamManyRoomsResume(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode)
			rooms := []string{"r1" + mode, "r2" + mode, "r3" + mode, "r4" + mode}
			alice := login(t, srv.URL, "alice-"+mode)
			alice.join(rooms...)
			bob := login(t, srv.URL, "bob-"+mode)
			bob.join(rooms...)
			s := alice.openStream("", "")
			waitFor(t, 10*time.Second, "one stream", func() bool { return serverCounters(t, srv).Streams == 1 })
			// One message in each of the five rooms; the stream's ids cover all.
			bob.post("first-chat")
			for _, r := range rooms {
				bob.postIn(r, "first-"+r)
			}
			msgs, ids := s.collectWithIDs(t, 5, 10*time.Second)
			if len(msgs) != 5 {
				t.Fatalf("got %d messages, want 5", len(msgs))
			}
			if n := serverCounters(t, srv).Streams; n != 1 {
				t.Fatalf("%d streams open for one user in five rooms, want 1", n)
			}
			last := ids[len(ids)-1]
			pos, err := chat.ParsePositions(last)
			if err != nil || len(pos) != 5 {
				t.Fatalf("id %q: %v; want a position of 5 rooms", last, err)
			}
			for _, m := range msgs {
				if id, _ := chat.ParseID(m.ID); pos[m.Room] != id {
					t.Fatalf("position %q: room %s at %v, want its message %s", last, m.Room, pos[m.Room], m.ID)
				}
			}
			s.Close()

			// Missed: messages in three rooms, interleaved.
			missed := map[string][]string{}
			for i := range 4 {
				for _, r := range []string{chat.DefaultRoom, rooms[1], rooms[3]} {
					text := fmt.Sprintf("missed-%s-%d", r, i)
					if r == chat.DefaultRoom {
						bob.post(text)
					} else {
						bob.postIn(r, text)
					}
					missed[r] = append(missed[r], text)
				}
			}
			resumed := alice.openStream(last, "")
			got, gotIDs := resumed.collectWithIDs(t, 12, 10*time.Second)
			// Every id says exactly what was sent so far in each room: a
			// client cut off mid-replay resumes where it really is.
			sent := maps.Clone(pos)
			for i, m := range got {
				sent[m.Room], _ = chat.ParseID(m.ID)
				if p, err := chat.ParsePositions(gotIDs[i]); err != nil || !maps.Equal(p, sent) {
					t.Fatalf("replayed message %d (%s): id %q, want the position %v", i, m.Text, gotIDs[i], sent)
				}
			}
			if g := byRoom(got); len(got) != 12 || len(g) != 3 ||
				!slices.Equal(g[chat.DefaultRoom], missed[chat.DefaultRoom]) || !slices.Equal(g[rooms[1]], missed[rooms[1]]) || !slices.Equal(g[rooms[3]], missed[rooms[3]]) {
				t.Fatalf("resume replayed %v, want %v", g, missed)
			}
			// Nothing more (a duplicate or another room's old message would
			// come before this live one).
			bob.postIn(rooms[0], "live")
			if next := resumed.collectMessages(t, 1, 10*time.Second); len(next) != 1 || next[0].Text != "live" {
				t.Fatalf("after the replay: %+v, want only the live message", next)
			}
		})
	}
}

// numsub is the number of subscribers of room's channel on Redis.
func numsub(t testing.TB, rdb redis.Cmdable, room string) int64 {
	ch := broker.Channel(room)
	n, err := rdb.PubSubNumSub(context.Background(), ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[ch]
}

// Each instance subscribes to a room's channel once, while it has local
// streams in the room, and unsubscribes after the linger once the last
// has closed.
func TestSubscriptionsFollowLocalStreams(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	// A pooled stream whose client left is noticed at its next heartbeat.
	a := startServer(t, rs.URL(), "-room-linger", "300ms", "-heartbeat", "200ms")
	b := startServer(t, rs.URL(), "-room-linger", "300ms", "-heartbeat", "200ms")
	if n := numsub(t, rdb, "dev"); n != 0 {
		t.Fatalf("NUMSUB before any stream: %d", n)
	}
	alice := login(t, a.URL, "alice")
	alice.join("dev")
	bob := login(t, b.URL, "bob")
	bob.join("dev")
	carol := login(t, a.URL, "carol")
	carol.join("dev")
	sa := alice.openStream("", "")
	sc := carol.openStream("", "") // a second local stream: still one subscription
	waitFor(t, 10*time.Second, "instance a subscribed", func() bool { return numsub(t, rdb, "dev") == 1 })
	sb := bob.openStream("", "")
	waitFor(t, 10*time.Second, "both instances subscribed", func() bool { return numsub(t, rdb, "dev") == 2 })
	sa.Close()
	sb.Close()
	waitFor(t, 10*time.Second, "instance b unsubscribed", func() bool { return numsub(t, rdb, "dev") == 1 })
	// Instance a still has carol: its subscription stays, past the linger.
	bob.postIn("dev", "still here")
	if got := sc.collectMessages(t, 1, 10*time.Second); len(got) != 1 {
		t.Fatal("carol's stream lost its room")
	}
	if n := numsub(t, rdb, "dev"); n != 1 {
		t.Fatalf("NUMSUB %d with one instance holding a stream, want 1", n)
	}
	sc.Close()
	waitFor(t, 10*time.Second, "no subscription left", func() bool { return numsub(t, rdb, "dev") == 0 })
}

// online returns the uids /r/{room}/online lists, and the count.
func (c *chatClient) online(room string) ([]string, int) {
	c.t.Helper()
	resp := c.get("/r/" + room + "/online")
	var l onlineList
	if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.body), &l) != nil {
		c.t.Fatalf("online list of %s: status %d: %s", room, resp.StatusCode, resp.body)
	}
	var uids []string
	for _, u := range l.Users {
		uids = append(uids, u.UID)
	}
	return uids, l.Count
}

// An instance killed with SIGKILL announces nothing: its users leave the
// online lists of the other instances by expiry, well within a minute,
// with one leave event each.
func TestKilledInstanceUsersLeave(t *testing.T) {
	rs := redistest.Start(t)
	flags := []string{"-presence-ttl", "2s", "-presence-grace", "300ms", "-heartbeat", "500ms"}
	victim := startProcess(t, rs.URL(), "127.0.0.1:0", flags...)
	survivor := startServer(t, rs.URL(), flags...)
	alice := login(t, survivor.URL, "alice")
	alice.join("dev")
	sa := alice.openStream("", "")
	bob := login(t, victim.URL, "bob")
	bob.join("dev")
	bob.openStream("", "")
	waitFor(t, 10*time.Second, "bob online on the survivor", func() bool {
		uids, _ := alice.online("dev")
		return slices.Contains(uids, "bob")
	})
	killed := time.Now()
	victim.kill()
	for {
		ev := sa.next(t, "leave", time.Minute)
		var sig chat.Signal
		if err := json.Unmarshal([]byte(ev.Data), &sig); err != nil {
			t.Fatal(err)
		}
		if sig.Room == "dev" && sig.UID == "bob" {
			break
		}
	}
	t.Logf("bob left %v after the kill", time.Since(killed).Round(time.Millisecond))
	if uids, n := alice.online("dev"); slices.Contains(uids, "bob") || n != 1 {
		t.Fatalf("online list after bob's instance died: %v (count %d), want alice alone", uids, n)
	}
}

// Room routes refuse what is not a room and never redirect off-site.
func TestRoomRoutes(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-max-rooms", "3", "-rate-joins", "4", "-rate-typing", "60")
	alice := login(t, srv.URL, "alice")
	for path, want := range map[string]int{
		"/r/dev":                        200,
		"/r/Dev":                        301,
		"/r/chat":                       301,
		"/r/d%C3%A9v":                   400,
		"/r/" + strings.Repeat("x", 33): 400,
		"/r/a%2Fb":                      400,
		"/r/dev%20ops":                  400,
	} {
		if resp := alice.get(path); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if loc := alice.get("/r/DEV").Header.Get("Location"); loc != "/r/dev" {
		t.Errorf("/r/DEV redirects to %q", loc)
	}
	// The join form without JavaScript.
	if resp := alice.get("/r/?room=Dev-2"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/r/dev-2" {
		t.Errorf("join form: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := alice.get("/r/?room=d%C3%A9v"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("join form with a bad name: %d", resp.StatusCode)
	}
	// Posting in a room not joined: 403; joined: 204.
	if resp := alice.postForm("/r/ops/post", url.Values{"message": {"hi"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("post in a room not joined: %d", resp.StatusCode)
	}
	alice.postIn("dev", "hi dev")
	// The cap on joined rooms (chat and dev already).
	alice.join("ops")
	if resp := alice.postForm("/r/web/join", nil); resp.StatusCode != http.StatusConflict || !strings.Contains(resp.body, "leave one") {
		t.Errorf("join beyond -max-rooms: %d %q", resp.StatusCode, resp.body)
	}
	if resp := alice.postForm("/r/ops/leave", nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("leave: %d", resp.StatusCode)
	}
	// Joins are rate-limited (4 a minute: dev and ops used two, web failed
	// at the cap after taking one).
	alice.join("web")
	alice.postForm("/r/web/leave", nil)
	if resp := alice.postForm("/r/x1/join", nil); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a join past the rate limit: %d %q", resp.StatusCode, resp.body)
	}
	// Typing: a burst of 2, then 429.
	for i, want := range []int{204, 204, 429} {
		if resp := alice.postForm("/r/dev/typing", nil); resp.StatusCode != want {
			t.Errorf("typing signal %d: %d, want %d", i, resp.StatusCode, want)
		}
	}

	// A logged-out visitor of a room comes back to it; next never leaves
	// the site or names anything but a room page.
	visitor := newClient(t, srv.URL)
	if loc := visitor.get("/r/dev").Header.Get("Location"); loc != "/login?next=%2Fr%2Fdev" {
		t.Fatalf("logged-out /r/dev redirects to %q", loc)
	}
	if page := visitor.get("/login?next=%2Fr%2Fdev"); !strings.Contains(page.body, `value="/r/dev"`) {
		t.Fatalf("login page does not keep next: %s", clip(page.body, 400))
	}
	for next, want := range map[string]string{
		"/r/dev": "/r/dev", "//evil.example/r/dev": "/", "https://evil.example": "/", "/r/dev/../../x": "/",
		"/r/Dev": "/", "/stream": "/", "": "/", `/\evil.example`: "/",
	} {
		c := newClient(t, srv.URL)
		resp := c.postForm("/login", url.Values{"user": {"next-tester"}, "next": {next}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("login with next %q: %d to %q, want %q", next, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
}
