package main

import (
	"net/http"
	"net/url"
	"strings"
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

// TestPostIdempotent: a resend with the same client_id (the page keeps it
// while retrying a message whose answer was lost) is answered 204 but
// stored and delivered once; a malformed client_id is refused.
func TestPostIdempotent(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	stream := alice.openStream("", "")
	for range 2 {
		resp := alice.postForm("/post", url.Values{"message": {"only once"}, "client_id": {"abc123"}})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("post: %d %s", resp.StatusCode, resp.body)
		}
	}
	alice.post("next")
	got := stream.collectMessages(t, 2, 5*time.Second)
	if !sameTexts(got, []string{"only once", "next"}) {
		t.Fatalf("got %q, want the resent message once", texts(got))
	}
	resp := alice.postForm("/post", url.Values{"message": {"x"}, "client_id": {"bad id!"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.body, "client_id") {
		t.Fatalf("bad client_id: %d %s", resp.StatusCode, resp.body)
	}
}
