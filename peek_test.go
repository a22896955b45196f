package main

import (
	"net/http"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestClosedTabNoticed: in takeover mode nobody reads a stream's connection,
// yet a tab that closed is noticed — at the next heartbeat, and at once when
// its login wants a new stream at its cap (a reloaded page must not get 429).
func TestClosedTabNoticed(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-stream-mode", "takeover", "-streams-per-session", "2", "-heartbeat", "300ms")
	alice := login(t, srv.URL, "alice")

	a, b := alice.openStream("", ""), alice.openStream("", "")
	a.Close()
	b.Close()
	// At the cap, with both peers gone: the reload gets its stream.
	c := alice.openStream("", "")
	alice.post("after reload")
	if got := c.collectMessages(t, 1, 5*time.Second); !sameTexts(got, []string{"after reload"}) {
		t.Fatalf("got %q", texts(got))
	}
	c.Close()
	waitFor(t, 10*time.Second, "closed streams removed by the heartbeat check", func() bool {
		return readyzStats(t, srv.URL).Streams == 0
	})

	// Live streams still count: a third one beyond the cap is refused.
	alice.openStream("", "")
	alice.openStream("", "")
	resp := alice.get("/stream")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third live stream: status %d, want 429", resp.StatusCode)
	}
}
