package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestLogoutEndsSessionEverywhere: after POST /logout a copy of the old
// cookie no longer works on any instance, and the session's open streams on
// every instance end with a "logged-out" disconnect event.
func TestLogoutEndsSessionEverywhere(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL())
	b := startServer(t, rs.URL())
	alice := login(t, a.URL, "alice")

	// A copy of the cookie, as an attacker who lifted it would hold.
	stolen := newClient(t, b.URL)
	ua, _ := url.Parse(a.URL)
	ub, _ := url.Parse(b.URL)
	stolen.hc.Jar, _ = cookiejar.New(nil)
	stolen.hc.Jar.SetCookies(ub, alice.hc.Jar.Cookies(ua))
	if resp := stolen.get("/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("copied cookie before logout: %d", resp.StatusCode)
	}
	onA := alice.openStream("", "")
	onB := stolen.openStream("", "")

	if resp := alice.postForm("/logout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	for name, s := range map[string]*sseStream{"a": onA, "b": onB} {
		ev := s.next(t, "disconnect", 10*time.Second)
		if !strings.Contains(ev.Data, "logged-out") {
			t.Fatalf("instance %s: disconnect %q, want reason logged-out", name, ev.Data)
		}
	}
	for _, path := range []string{"/whoami", "/stream"} {
		if resp := stolen.get(path); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("copied cookie after logout: GET %s = %d, want 401", path, resp.StatusCode)
		}
	}
	if resp := stolen.postForm("/post", url.Values{"message": {"as alice"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("copied cookie after logout: POST /post = %d, want 401", resp.StatusCode)
	}
	if resp := stolen.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("copied cookie after logout: GET / = %d, want 303", resp.StatusCode)
	}
	// Logging in again starts a new, working session.
	login(t, a.URL, "alice").post("back again")
}
