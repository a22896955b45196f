package main

import (
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestTutorialProtocol speaks the Flask tutorial's HTTP interface with a
// plain client: form login with "user", form post with "message" → 204, and
// the message arrives on /stream as JSON.
func TestTutorialProtocol(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	stream := alice.openStream("", "")
	alice.post("hello from the tutorial")
	got := stream.collectMessages(t, 1, 5*time.Second)
	if len(got) != 1 || got[0].Text != "hello from the tutorial" || got[0].User != "alice" || got[0].ID == "" || got[0].Time.IsZero() {
		t.Fatalf("got %+v", got)
	}
}
