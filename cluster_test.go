package main

import (
	"chatroom/internal/chat"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// texts returns the texts of msgs.
func texts(msgs []chat.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Text
	}
	return out
}

func sameTexts(got []chat.Message, want []string) bool {
	return strings.Join(texts(got), "\x00") == strings.Join(want, "\x00")
}

// TestRedisCluster runs two instances against a 3-master Redis Cluster:
// sharded pub/sub carries messages posted on either instance to subscribers
// of both, and history and resume work with the room's keys in one slot.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	a := startServer(t, cl.URL(), "-rate-posts", "0")
	b := startServer(t, cl.URL(), "-rate-posts", "0")

	alice := login(t, a.URL, "alice")
	bob := login(t, b.URL, "bob")
	sa := alice.openStream("", "")
	sb := bob.openStream("", "")

	want := []string{"one from a", "two from b", "three from a"}
	alice.post(want[0])
	bob.post(want[1])
	alice.post(want[2])
	var ids []string
	for name, s := range map[string]*sseStream{"a": sa, "b": sb} {
		got := s.collectMessages(t, len(want), 10*time.Second)
		if !sameTexts(got, want) {
			t.Fatalf("instance %s got %q, want %q", name, texts(got), want)
		}
		ids = []string{got[0].ID, got[1].ID, got[2].ID}
	}

	// Resume on instance b after the first message: the other two, in order.
	resumed := bob.openStream(ids[0], "").collectMessages(t, 2, 10*time.Second)
	if !sameTexts(resumed, want[1:]) {
		t.Fatalf("resume after %s got %q, want %q", ids[0], texts(resumed), want[1:])
	}
	// History is rendered into the page.
	page := login(t, b.URL, "carol").get("/")
	for _, w := range want {
		if !strings.Contains(page.body, w) {
			t.Fatalf("chat page lacks history message %q", w)
		}
	}
}
