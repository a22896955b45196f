package main

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"chatroom/internal/redistest"
)

// A plain form POST (no JavaScript) gets 303 back to its room, and an
// error comes back as the room's page with the sentence shown and the text
// kept; fetch and curl keep their 204 and plain-text errors. The request
// says which it is (Sec-Fetch-Mode, else Accept).
func TestNoJSPosting(t *testing.T) {
	srv := startServer(t, redistest.Start(t).URL(), "-max-message", "20")
	alice := login(t, srv.URL, "alice")
	alice.join("dev")
	post := func(path string, hdr map[string]string, text string) response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(url.Values{"message": {text}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return alice.do(req)
	}
	navigate := map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
	oldBrowser := map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
	fetch := map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Accept": "*/*"}

	for name, tc := range map[string]struct {
		path string
		hdr  map[string]string
		want int
		loc  string
	}{
		"navigate /r/dev": {"/r/dev/post", navigate, http.StatusSeeOther, "/r/dev"},
		"navigate /post":  {"/post", navigate, http.StatusSeeOther, "/"},
		"old browser":     {"/r/dev/post", oldBrowser, http.StatusSeeOther, "/r/dev"},
		"fetch":           {"/r/dev/post", fetch, http.StatusNoContent, ""},
		"curl":            {"/r/dev/post", nil, http.StatusNoContent, ""},
	} {
		resp := post(tc.path, tc.hdr, "hi "+strings.Fields(name)[0])
		if resp.StatusCode != tc.want || resp.Header.Get("Location") != tc.loc {
			t.Errorf("%s: %d to %q, want %d to %q", name, resp.StatusCode, resp.Header.Get("Location"), tc.want, tc.loc)
		}
	}
	page := alice.get("/r/dev")
	for _, text := range []string{"hi navigate", "hi old", "hi fetch", "hi curl"} {
		if !strings.Contains(page.body, text) {
			t.Errorf("the room's history lacks %q", text)
		}
	}
	if !strings.Contains(page.body, "Live updates need JavaScript") {
		t.Error("the page does not say that live updates need JavaScript")
	}

	// Errors: the page, with the sentence and the text kept.
	long := "<b>far too long for the limit</b>"
	resp := post("/r/dev/post", navigate, long)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.body, `role="alert">`) || !strings.Contains(resp.body, ">"+html.EscapeString(long)+"</textarea>") {
		t.Fatalf("a refused form post: %d %q, page with error and text: %s", resp.StatusCode, resp.Header.Get("Content-Type"), clip(resp.body, 300))
	}
	if strings.Contains(resp.body, "<b>far") {
		t.Fatal("the kept text is not escaped")
	}
	if resp := post("/r/dev/post", fetch, long); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("a refused fetch post: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Not joined: the page says so.
	if resp := post("/r/ops/post", navigate, "hello"); resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.body, "Message not sent: join the room first") {
		t.Fatalf("a form post in a room not joined: %d %s", resp.StatusCode, clip(resp.body, 200))
	}
	// Logged out: to the login page, and back to the room.
	anon := newClient(t, srv.URL)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/r/dev/post", strings.NewReader("message=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	if resp := anon.do(req); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fr%2Fdev" {
		t.Fatalf("a logged-out form post: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
