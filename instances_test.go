package main

import (
	"chatroom/internal/chat"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestInstancesShareRoomAndSessions runs two servers on one redis-server.
// Messages posted to either arrive on streams opened on both, in the same
// order everywhere; a session cookie made by one instance is accepted by the
// other (the generated session secret is shared through Redis).
func TestInstancesShareRoomAndSessions(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL())
	b := startServer(t, rs.URL())
	if a.URL == b.URL {
		t.Fatalf("both instances on %s", a.URL)
	}
	for _, s := range []*testServer{a, b} {
		if !strings.Contains(s.logs.String(), `session_secret="shared through redis"`) {
			t.Fatalf("instance %s does not use the shared session secret:\n%s", s.URL, s.logs)
		}
	}

	// Sessions made on one instance work on the other, both ways, for
	// every route that needs one. Each check sends the cookie explicitly
	// to the other instance's address.
	alice := login(t, a.URL, "alice") // logged in on A
	bob := login(t, b.URL, "bob")     // logged in on B
	aliceOnB := crossInstance(t, alice, a.URL, b.URL)
	bobOnA := crossInstance(t, bob, b.URL, a.URL)
	for _, tc := range []struct {
		c    *chatClient
		name string
	}{{aliceOnB, "alice"}, {bobOnA, "bob"}} {
		if got := tc.c.get("/whoami"); got.StatusCode != 200 || !strings.Contains(got.body, `"user":"`+tc.name+`"`) {
			t.Fatalf("%s's cookie on %s: whoami %d %s", tc.name, tc.c.base, got.StatusCode, got.body)
		}
		if got := tc.c.get("/"); got.StatusCode != 200 || !strings.Contains(got.body, `<b id="me" dir="auto" title="`+tc.name+`">`+tc.name+`</b>`) {
			t.Fatalf("%s's cookie on %s: page %d", tc.name, tc.c.base, got.StatusCode)
		}
	}

	// Streams on both instances, including one opened with a cookie the
	// other instance issued.
	streams := map[string]*sseStream{
		"alice@A": alice.openStream("", ""),
		"alice@B": aliceOnB.openStream("", ""),
		"bob@B":   bob.openStream("", ""),
		"bob@A":   bobOnA.openStream("", ""),
	}

	// Posts alternate between the instances (and between cookies used on
	// their own and on the other instance).
	posters := []struct {
		c    *chatClient
		user string
	}{{alice, "alice"}, {bob, "bob"}, {bobOnA, "bob"}, {aliceOnB, "alice"}}
	const n = 20
	var want []string
	for i := range n {
		p := posters[i%len(posters)]
		text := fmt.Sprintf("message %d from %s via %s", i, p.user, p.c.base)
		p.c.post(text)
		want = append(want, text)
	}

	var reference []chat.Message
	for name, s := range streams {
		got := s.collectMessages(t, n, 10*time.Second)
		if len(got) != n {
			t.Fatalf("%s received %d of %d messages: %+v", name, len(got), n, got)
		}
		for i, m := range got {
			if m.Text != want[i] {
				t.Fatalf("%s: message %d is %q, want %q (posting order)", name, i, m.Text, want[i])
			}
			wantUser := posters[i%len(posters)].user
			if m.User != wantUser {
				t.Fatalf("%s: message %d from %q, want %q", name, i, m.User, wantUser)
			}
		}
		if reference == nil {
			reference = got
			continue
		}
		for i := range got {
			if got[i].ID != reference[i].ID {
				t.Fatalf("%s: message %d has ID %s, another stream saw %s: instances disagree on order", name, i, got[i].ID, reference[i].ID)
			}
		}
	}
	for i := 1; i < len(reference); i++ {
		prev, _ := chat.ParseID(reference[i-1].ID)
		cur, err := chat.ParseID(reference[i].ID)
		if err != nil || !cur.After(prev) {
			t.Fatalf("IDs not increasing: %s then %s", reference[i-1].ID, reference[i].ID)
		}
	}

	// Each instance holds exactly one Redis subscription to the room's
	// channel however many streams it serves: 2 in total.
	subs, err := rs.Client().PubSubNumSub(t.Context(), "chat").Result()
	if err != nil {
		t.Fatal(err)
	}
	if subs["chat"] != 2 {
		t.Fatalf("redis reports %d subscriptions to chat, want 2 (one per instance)", subs["chat"])
	}
}

// crossInstance returns a client that presents c's cookies (issued by
// from) to the instance at to, in a jar of its own.
func crossInstance(t *testing.T, c *chatClient, from, to string) *chatClient {
	t.Helper()
	fu, _ := url.Parse(from)
	cks := c.hc.Jar.Cookies(fu)
	if len(cks) == 0 {
		t.Fatalf("no cookies from %s", from)
	}
	other := newClient(t, to)
	tu, _ := url.Parse(to)
	other.hc.Jar.SetCookies(tu, cks)
	if got := other.get("/whoami"); got.StatusCode == http.StatusUnauthorized {
		t.Fatalf("instance %s refuses the session cookie issued by %s: %s", to, from, got.body)
	}
	return other
}
