package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"chatroom/internal/redistest"
)

// Secrets for -session-keys: at least 32 characters each.
const (
	testSessionKey  = "issue4-session-key-0123456789abcdefghij"
	otherSessionKey = "issue4-someone-elses-key-9876543210zyxw"
	newSessionKey   = "issue4-rotated-in-key-abcdefghij0123456"
)

// rawClient sends requests exactly as given: no cookie jar, no redirects.
var rawClient = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// rawRequest is one request of the hostile table.
type rawRequest struct {
	method, path, body string
	ctype              string            // "" means form-encoded when there is a body; "none": no header
	header             map[string]string // extra headers
	cookie             string            // value of the session cookie; "" sends none
}

type rawResponse struct {
	status int
	header http.Header
	body   string
}

// send performs r against base. For an event stream it reads until the body
// contains until (or 5 s pass), then hangs up.
func (r rawRequest) send(t testing.TB, base, until string) rawResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, body)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	switch {
	case r.ctype == "none":
	case r.ctype != "":
		req.Header.Set("Content-Type", r.ctype)
	case r.body != "":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.cookie != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: r.cookie})
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return rawResponse{resp.StatusCode, resp.Header, string(b)}
	}
	// A stream never ends by itself: read until the wanted text arrives.
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		p := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(p)
			buf.Write(p[:n])
			if err != nil || strings.Contains(buf.String(), until) {
				got <- buf.String()
				return
			}
		}
	}()
	var text string
	select {
	case text = <-got:
	case <-time.After(5 * time.Second):
		cancel()
		text = <-got
	}
	return rawResponse{resp.StatusCode, resp.Header, text}
}

// formBody encodes name/value pairs in order (repeats allowed).
func formBody(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + url.QueryEscape(kv[i+1]))
	}
	return b.String()
}

// multipartBody returns a multipart/form-data body and its content type.
func multipartBody(t testing.TB, kv ...string) (string, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for i := 0; i+1 < len(kv); i += 2 {
		if err := w.WriteField(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return b.String(), w.FormDataContentType()
}

// loginCookie logs in with a plain form POST and returns the session cookie.
func loginCookie(t testing.TB, base, user, password string) *http.Cookie {
	t.Helper()
	resp := rawRequest{method: "POST", path: "/login", body: formBody("user", user, "password", password)}.send(t, base, "")
	if resp.status != http.StatusSeeOther {
		t.Fatalf("login %q: %d %s", user, resp.status, resp.body)
	}
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatalf("login %q: no %s cookie in %v", user, sessionCookie, resp.header)
	return nil
}

// signedCookie makes a session cookie with the given values, signed and
// encrypted with secret the way the server does.
func signedCookie(t testing.TB, secret string, values map[string]string) string {
	t.Helper()
	st := newSessionStore([]string{secret}, time.Hour, false, nil)
	req := httptest.NewRequest("POST", "/login", nil)
	rec := httptest.NewRecorder()
	sess, _ := st.store.New(req, sessionCookie)
	for k, v := range values {
		sess.Values[k] = v
	}
	if err := sess.Save(req, rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	t.Fatal("no cookie saved")
	return ""
}

// TestHostileRequests sends malformed and hostile requests to a real server:
// each gets the expected status and a readable reason, nothing is a 500, and
// afterwards the server still serves a normal login, post and stream.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-session-keys", testSessionKey, "-max-message", "100",
		"-rate-posts", "0", "-streams-per-session", "0", "-trusted-proxies", "10.0.0.0/8")
	host := strings.TrimPrefix(srv.URL, "http://")

	alice := loginCookie(t, srv.URL, "alice", "").Value
	random := make([]byte, 120)
	rand.Read(random)
	forged := base64.URLEncoding.EncodeToString(random)
	// Flip one character in the middle: the signature no longer matches.
	mid := len(alice) / 2
	flip := byte('A')
	if alice[mid] == 'A' {
		flip = 'B'
	}
	garbled := alice[:mid] + string(flip) + alice[mid+1:]
	truncated := alice[:len(alice)/2]
	valid := map[string]string{"name": "alice", "uid": "alice", "sid": "x"}
	otherKey := signedCookie(t, otherSessionKey, valid)
	ownKey := signedCookie(t, testSessionKey, valid)
	noSID := signedCookie(t, testSessionKey, map[string]string{"name": "alice", "uid": "alice"})
	if r := (rawRequest{method: "GET", path: "/whoami", cookie: ownKey}).send(t, srv.URL, ""); r.status != 200 {
		t.Fatalf("a cookie made with the server's own key is refused (%d): the forged-cookie cases prove nothing", r.status)
	}

	longName := strings.Repeat("n", 33)
	huge := strings.Repeat("x", 70<<10)
	mpOK, mpOKType := multipartBody(t, "message", "multipart is fine")
	mpHuge, mpHugeType := multipartBody(t, "message", huge)
	mpDup, mpDupType := multipartBody(t, "message", "one", "message", "two")
	crossSite := map[string]string{"Sec-Fetch-Site": "cross-site"}
	sameSite := map[string]string{"Sec-Fetch-Site": "same-site"}
	evil := map[string]string{"Origin": "https://evil.example"}
	lei := func(v string) map[string]string { return map[string]string{"Last-Event-ID": v} }

	tests := []struct {
		name   string
		req    rawRequest
		status int
		want   string
	}{
		// Wrong methods.
		{"GET /post", rawRequest{method: "GET", path: "/post?message=hi", cookie: alice}, 405, "Method Not Allowed"},
		{"DELETE /post", rawRequest{method: "DELETE", path: "/post", cookie: alice}, 405, "Method Not Allowed"},
		{"PUT /login", rawRequest{method: "PUT", path: "/login", body: formBody("user", "x")}, 405, "Method Not Allowed"},
		{"GET /logout", rawRequest{method: "GET", path: "/logout", cookie: alice}, 405, "Method Not Allowed"},
		{"POST /stream", rawRequest{method: "POST", path: "/stream", cookie: alice}, 405, "Method Not Allowed"},
		{"PATCH /", rawRequest{method: "PATCH", path: "/", cookie: alice}, 405, "Method Not Allowed"},
		{"OPTIONS /post", rawRequest{method: "OPTIONS", path: "/post"}, 405, "Method Not Allowed"},
		{"unknown path", rawRequest{method: "GET", path: "/admin"}, 404, "not found"},
		{"static directory listing", rawRequest{method: "GET", path: "/static/"}, 404, "not found"},

		// Login: missing, duplicate and bad fields.
		{"login without body", rawRequest{method: "POST", path: "/login", ctype: "none"}, 400, "is missing"},
		{"login without user", rawRequest{method: "POST", path: "/login", body: formBody("name", "alice")}, 400, "is missing"},
		{"login user twice", rawRequest{method: "POST", path: "/login", body: formBody("user", "alice", "user", "mallory")}, 400, "was given 2 times"},
		{"login password twice", rawRequest{method: "POST", path: "/login", body: formBody("user", "bob", "password", "a", "password", "b")}, 400, "was given 2 times"},
		{"empty name", rawRequest{method: "POST", path: "/login", body: formBody("user", "")}, 400, "name is empty"},
		{"blank name", rawRequest{method: "POST", path: "/login", body: formBody("user", " \u00a0 ")}, 400, "name is empty"},
		{"name invalid UTF-8", rawRequest{method: "POST", path: "/login", body: formBody("user", "al\xff\xfeice")}, 400, "not valid UTF-8"},
		{"name with NUL", rawRequest{method: "POST", path: "/login", body: formBody("user", "al\x00ice")}, 400, "U+0000"},
		{"name with escape", rawRequest{method: "POST", path: "/login", body: formBody("user", "\x1b[1malice")}, 400, "U+001B"},
		{"name with newline", rawRequest{method: "POST", path: "/login", body: formBody("user", "alice\nadmin")}, 400, "U+000A"},
		{"name with CR", rawRequest{method: "POST", path: "/login", body: formBody("user", "alice\r")}, 400, "U+000D"},
		{"name with RTL override", rawRequest{method: "POST", path: "/login", body: formBody("user", "\u202Eecila")}, 400, "U+202E"},
		{"name with zero-width space", rawRequest{method: "POST", path: "/login", body: formBody("user", "al\u200Bice")}, 400, "U+200B"},
		{"name of 33 characters", rawRequest{method: "POST", path: "/login", body: formBody("user", longName)}, 400, "the limit is 32"},
		{"name with emoji", rawRequest{method: "POST", path: "/login", body: formBody("user", "alice😀")}, 400, "not allowed"},
		{"reserving password too short", rawRequest{method: "POST", path: "/login", body: formBody("user", "carol", "password", "short")}, 400, "at least 8 characters"},
		{"password too long", rawRequest{method: "POST", path: "/login", body: formBody("user", "carol", "password", strings.Repeat("p", 73))}, 400, "too long"},
		{"login body over 64 KiB", rawRequest{method: "POST", path: "/login", body: formBody("user", huge)}, 413, "too large"},
		{"login as JSON", rawRequest{method: "POST", path: "/login", body: `{"user":"alice"}`, ctype: "application/json"}, 415, "application/x-www-form-urlencoded"},
		{"login unparsable content type", rawRequest{method: "POST", path: "/login", body: "user=x", ctype: "text/"}, 415, "application/x-www-form-urlencoded"},
		{"login cross-site", rawRequest{method: "POST", path: "/login", body: formBody("user", "mallory"), header: crossSite}, 403, "cross-origin"},
		{"login from foreign origin", rawRequest{method: "POST", path: "/login", body: formBody("user", "mallory"), header: evil}, 403, "cross-origin"},

		// Posting: session, fields, content.
		{"post without session", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi")}, 401, "not logged in"},
		{"post with random cookie", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: forged}, 401, "not logged in"},
		{"post with garbled cookie", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: garbled}, 401, "not logged in"},
		{"post with truncated cookie", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: truncated}, 401, "not logged in"},
		{"post with cookie of another key", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: otherKey}, 401, "not logged in"},
		{"post with signed cookie lacking a login id", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: noSID}, 401, "not logged in"},
		{"post with non-base64 cookie", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), cookie: "!!!%%%"}, 401, "not logged in"},
		{"post without message", rawRequest{method: "POST", path: "/post", body: formBody("text", "hi"), cookie: alice}, 400, "is missing"},
		{"message in URL, not body", rawRequest{method: "POST", path: "/post?message=hi", body: formBody("x", "y"), cookie: alice}, 400, "is missing"},
		{"body without content type", rawRequest{method: "POST", path: "/post", body: formBody("message", "hi"), ctype: "none", cookie: alice}, 400, "is missing"},
		{"message twice", rawRequest{method: "POST", path: "/post", body: formBody("message", "a", "message", "b"), cookie: alice}, 400, "was given 2 times"},
		{"multipart message twice", rawRequest{method: "POST", path: "/post", body: mpDup, ctype: mpDupType, cookie: alice}, 400, "was given 2 times"},
		{"empty message", rawRequest{method: "POST", path: "/post", body: formBody("message", ""), cookie: alice}, 400, "message is empty"},
		{"blank message", rawRequest{method: "POST", path: "/post", body: formBody("message", " \r\n\t "), cookie: alice}, 400, "message is empty"},
		{"message invalid UTF-8", rawRequest{method: "POST", path: "/post", body: formBody("message", "caf\xe9"), cookie: alice}, 400, "not valid UTF-8"},
		{"message with NUL", rawRequest{method: "POST", path: "/post", body: formBody("message", "a\x00b"), cookie: alice}, 400, "U+0000"},
		{"message with terminal escape", rawRequest{method: "POST", path: "/post", body: formBody("message", "\x1b[2J"), cookie: alice}, 400, "U+001B"},
		{"message with DEL", rawRequest{method: "POST", path: "/post", body: formBody("message", "a\x7f"), cookie: alice}, 400, "U+007F"},
		{"message with RTL override", rawRequest{method: "POST", path: "/post", body: formBody("message", "txt.\u202Eexe"), cookie: alice}, 400, "U+202E"},
		{"message bad percent-encoding", rawRequest{method: "POST", path: "/post", body: "message=%zz", cookie: alice}, 400, "could not be read"},
		{"message over -max-message", rawRequest{method: "POST", path: "/post", body: formBody("message", strings.Repeat("x", 101)), cookie: alice}, 413, "the limit is 100"},
		{"message over limit in characters", rawRequest{method: "POST", path: "/post", body: formBody("message", strings.Repeat("é", 101)), cookie: alice}, 413, "101 characters, the limit is 100"},
		{"message at limit in characters", rawRequest{method: "POST", path: "/post", body: formBody("message", strings.Repeat("é", 100)), cookie: alice}, 204, ""},
		{"post body over 64 KiB", rawRequest{method: "POST", path: "/post", body: formBody("message", huge), cookie: alice}, 413, "too large"},
		{"multipart body over 64 KiB", rawRequest{method: "POST", path: "/post", body: mpHuge, ctype: mpHugeType, cookie: alice}, 413, "too large"},
		{"post as JSON", rawRequest{method: "POST", path: "/post", body: `{"message":"hi"}`, ctype: "application/json", cookie: alice}, 415, "application/x-www-form-urlencoded"},
		{"post as text", rawRequest{method: "POST", path: "/post", body: "hi", ctype: "text/plain", cookie: alice}, 415, "not text/plain"},
		{"multipart post works", rawRequest{method: "POST", path: "/post", body: mpOK, ctype: mpOKType, cookie: alice}, 204, ""},
		{"form with charset works", rawRequest{method: "POST", path: "/post", body: formBody("message", "charset"), ctype: "application/x-www-form-urlencoded; charset=utf-8", cookie: alice}, 204, ""},

		// Cross-origin POSTs.
		{"post cross-site", rawRequest{method: "POST", path: "/post", body: formBody("message", "csrf"), header: crossSite, cookie: alice}, 403, "cross-origin"},
		{"post same-site other origin", rawRequest{method: "POST", path: "/post", body: formBody("message", "csrf"), header: sameSite, cookie: alice}, 403, "cross-origin"},
		{"post from foreign Origin, no Sec-Fetch-Site", rawRequest{method: "POST", path: "/post", body: formBody("message", "csrf"), header: evil, cookie: alice}, 403, "cross-origin"},
		{"post from null Origin", rawRequest{method: "POST", path: "/post", body: formBody("message", "csrf"), header: map[string]string{"Origin": "null"}, cookie: alice}, 403, "cross-origin"},
		{"logout cross-site", rawRequest{method: "POST", path: "/logout", header: crossSite, cookie: alice}, 403, "cross-origin"},
		{"post same-origin works", rawRequest{method: "POST", path: "/post", body: formBody("message", "same-origin"), header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, cookie: alice}, 204, ""},
		{"post typed-in (Sec-Fetch-Site none) works", rawRequest{method: "POST", path: "/post", body: formBody("message", "none"), header: map[string]string{"Sec-Fetch-Site": "none"}, cookie: alice}, 204, ""},
		{"post with own Origin works", rawRequest{method: "POST", path: "/post", body: formBody("message", "own origin"), header: map[string]string{"Origin": "http://" + host}, cookie: alice}, 204, ""},
		{"post without browser headers works", rawRequest{method: "POST", path: "/post", body: formBody("message", "curl"), cookie: alice}, 204, ""},
		{"cross-site GET is allowed", rawRequest{method: "GET", path: "/login", header: crossSite}, 200, "<form"},

		// Pages and streams without a valid session.
		{"chat page without session", rawRequest{method: "GET", path: "/"}, 303, ""},
		{"chat page with forged cookie", rawRequest{method: "GET", path: "/", cookie: forged}, 303, ""},
		{"chat page with cookie of another key", rawRequest{method: "GET", path: "/", cookie: otherKey}, 303, ""},
		{"whoami without session", rawRequest{method: "GET", path: "/whoami"}, 401, "not logged in"},
		{"whoami with garbled cookie", rawRequest{method: "GET", path: "/whoami", cookie: garbled}, 401, "not logged in"},
		{"stream without session", rawRequest{method: "GET", path: "/stream"}, 401, "not logged in"},
		{"stream with random cookie", rawRequest{method: "GET", path: "/stream", cookie: forged}, 401, "not logged in"},
		{"stream with truncated cookie", rawRequest{method: "GET", path: "/stream", cookie: truncated}, 401, "not logged in"},
		{"stream with cookie of another key", rawRequest{method: "GET", path: "/stream", cookie: otherKey}, 401, "not logged in"},
		{"HEAD stream without session", rawRequest{method: "HEAD", path: "/stream"}, 401, ""},

		// Bad Last-Event-ID: the stream opens and says it ignored the ID.
		{"Last-Event-ID letters", rawRequest{method: "GET", path: "/stream", header: lei("abc"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID inner spaces", rawRequest{method: "GET", path: "/stream", header: lei("1 - 1"), cookie: alice}, 200, "bad-last-event-id"},
		{"last_event_id leading space", rawRequest{method: "GET", path: "/stream?last_event_id=%201-1", cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID overflowing number", rawRequest{method: "GET", path: "/stream", header: lei("99999999999999999999999-0"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID 0-0", rawRequest{method: "GET", path: "/stream", header: lei("0-0"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID negative", rawRequest{method: "GET", path: "/stream", header: lei("-1-0"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID three parts", rawRequest{method: "GET", path: "/stream", header: lei("1-2-3"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID 4 KiB", rawRequest{method: "GET", path: "/stream", header: lei(strings.Repeat("9", 4096)), cookie: alice}, 200, "bad-last-event-id"},
		{"bad header wins over good query", rawRequest{method: "GET", path: "/stream?last_event_id=1-1", header: lei("x"), cookie: alice}, 200, "bad-last-event-id"},
		{"Last-Event-ID largest possible", rawRequest{method: "GET", path: "/stream", header: lei("18446744073709551615-18446744073709551615"), cookie: alice}, 200, "unknown last event ID"},
		{"Last-Event-ID from the future", rawRequest{method: "GET", path: "/stream", header: lei("99999999999999-0"), cookie: alice}, 200, "unknown last event ID"},

		// Oversized headers are refused before any handler runs.
		{"header over MaxHeaderBytes", rawRequest{method: "GET", path: "/login", header: map[string]string{"X-Pad": strings.Repeat("a", 64<<10)}}, 431, "Header"},
	}
	if len(tests) < 45 {
		t.Fatalf("only %d hostile requests", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.req.send(t, srv.URL, tc.want)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d; body: %s", resp.status, tc.status, shown(resp.body))
			}
			if !strings.Contains(html.UnescapeString(resp.body), tc.want) {
				t.Fatalf("body does not contain %q: %s", tc.want, shown(resp.body))
			}
			if resp.status == 303 && resp.header.Get("Location") != "/login" {
				t.Fatalf("redirect to %q, want /login", resp.header.Get("Location"))
			}
			if resp.status == 200 && tc.req.path[:min(len(tc.req.path), 7)] == "/stream" &&
				resp.header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("stream content type %q", resp.header.Get("Content-Type"))
			}
			if resp.status != 431 && resp.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("response lacks X-Content-Type-Options: nosniff: %v", resp.header)
			}
		})
	}
	if strings.Contains(srv.logs.String(), "panic") {
		t.Fatalf("a handler panicked:\n%s", srv.logs)
	}

	// The server still serves everyone, and a message cannot forge SSE
	// events: each text arrives as one message event, intact (trimmed, line
	// breaks as "\n"). A stream that sent an unknown ID gets them too.
	bob := login(t, srv.URL, "bob")
	stream := bob.openStream("", "")
	future := bob.openStream("18446744073709551615-18446744073709551615", "")
	texts := []string{
		"\n\ndata: injected\nevent: x",
		"line one\r\n\r\nevent: x\rdata: y\rid: 1-1",
		"retry: 1\n: comment\nid: 99-9",
		"after the table",
	}
	for _, text := range texts {
		bob.post(text)
	}
	want := []string{"data: injected\nevent: x", "line one\n\nevent: x\ndata: y\nid: 1-1", texts[2], texts[3]}
	deadline := time.After(10 * time.Second)
	for i := 0; i < len(want); {
		select {
		case ev, ok := <-stream.Events:
			if !ok {
				t.Fatal("stream ended")
			}
			if roomSignal(ev.Event) {
				continue // who is online: not part of the injection check
			}
			if ev.Event != "message" {
				t.Fatalf("unexpected %q event %+v before message %d", ev.Event, ev, i)
			}
			m, err := decodeEvent(ev)
			if err != nil {
				t.Fatalf("event %+v: %v", ev, err)
			}
			if m.Text != want[i] || m.User != "bob" || m.ID == "" || m.ID != ev.ID {
				t.Fatalf("message %d = %+v (event id %q), want text %q from bob", i, m, ev.ID, want[i])
			}
			i++
		case <-deadline:
			t.Fatalf("only %d of %d messages arrived", i, len(want))
		}
	}
	got := future.collectMessages(t, len(want), 10*time.Second)
	if len(got) != len(want) {
		t.Fatalf("stream opened with an unknown ID got %d of %d live messages", len(got), len(want))
	}
	for i := range want {
		if got[i].Text != want[i] {
			t.Fatalf("stream opened with an unknown ID: message %d = %q, want %q", i, got[i].Text, want[i])
		}
	}
}

// TestSecurityHeaders checks the headers of pages, files and errors, and the
// session cookie's attributes.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-trusted-proxies", "10.0.0.0/8")
	alice := login(t, srv.URL, "alice")
	for _, path := range []string{"/", "/login", "/static/app.js", "/whoami", "/post", "/nope"} {
		resp := alice.get(path)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, part := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'", "object-src 'none'"} {
			if !strings.Contains(csp, part) {
				t.Errorf("GET %s (%d): CSP %q lacks %q", path, resp.StatusCode, csp, part)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "*") {
			t.Errorf("GET %s: CSP %q is not strict", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, h.Get("X-Content-Type-Options"))
		}
		if rp := h.Get("Referrer-Policy"); rp != "same-origin" && rp != "no-referrer" && rp != "strict-origin-when-cross-origin" && rp != "strict-origin" {
			t.Errorf("GET %s: Referrer-Policy %q", path, rp)
		}
	}

	// The session cookie: HttpOnly, SameSite=Lax, bounded, not Secure over
	// plain HTTP, even when an untrusted peer claims HTTPS.
	for _, hdr := range []map[string]string{nil, {"X-Forwarded-Proto": "https"}} {
		resp := rawRequest{method: "POST", path: "/login", body: formBody("user", "carol"), header: hdr}.send(t, srv.URL, "")
		c := sessionSetCookie(t, resp)
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Errorf("cookie %q: want HttpOnly, SameSite=Lax, Path=/", c.Raw)
		}
		if c.MaxAge <= 0 || c.MaxAge > 7*24*3600 {
			t.Errorf("cookie %q: Max-Age %d, want 1..%d", c.Raw, c.MaxAge, 7*24*3600)
		}
		if c.Secure {
			t.Errorf("cookie %q is Secure over plain HTTP (headers %v from an untrusted peer)", c.Raw, hdr)
		}
	}
	logout := rawRequest{method: "POST", path: "/logout", cookie: "x"}.send(t, srv.URL, "")
	if c := sessionSetCookie(t, logout); c.MaxAge >= 0 || !c.HttpOnly {
		t.Errorf("logout cookie %q does not delete the session", c.Raw)
	}

	// Behind a trusted proxy, X-Forwarded-Proto: https makes it Secure.
	proxied := startServer(t, rs.URL(), "-trusted-proxies", "127.0.0.1")
	for hdr, secure := range map[string]bool{"https": true, "http": false, "": false} {
		resp := rawRequest{method: "POST", path: "/login", body: formBody("user", "dave"), header: map[string]string{"X-Forwarded-Proto": hdr}}.send(t, proxied.URL, "")
		if c := sessionSetCookie(t, resp); c.Secure != secure {
			t.Errorf("trusted proxy, X-Forwarded-Proto %q: cookie %q, want Secure=%v", hdr, c.Raw, secure)
		}
	}
	// -secure-cookies: always Secure, with a configured lifetime.
	secure := startServer(t, rs.URL(), "-secure-cookies", "-session-max-age", "1h")
	resp := rawRequest{method: "POST", path: "/login", body: formBody("user", "erin")}.send(t, secure.URL, "")
	if c := sessionSetCookie(t, resp); !c.Secure || c.MaxAge != 3600 || !c.HttpOnly {
		t.Errorf("-secure-cookies: cookie %q, want Secure, HttpOnly, Max-Age=3600", c.Raw)
	}
}

func sessionSetCookie(t testing.TB, resp rawResponse) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie set (status %d, %v)", sessionCookie, resp.status, resp.header)
	return nil
}

// TestNameReservation: a password reserves a name and its look-alikes; the
// wrong or a missing password gets 401, password attempts are rate-limited.
func TestNameReservation(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-passwords", "3")
	try := func(user, password string) rawResponse {
		return rawRequest{method: "POST", path: "/login", body: formBody("user", user, "password", password)}.send(t, srv.URL, "")
	}
	expect := func(user, password string, status int, want string) rawResponse {
		t.Helper()
		r := try(user, password)
		if r.status != status || !strings.Contains(r.body, want) {
			t.Fatalf("login %q with password %q: %d, want %d with %q: %s", user, password, r.status, status, want, shown(r.body))
		}
		return r
	}
	rdb := rs.Client()
	ctx := context.Background()
	// bcrypt at the server's cost takes seconds under the race detector:
	// after checking that the reservation stored such a hash, swap it for a
	// cheap hash of the same password (the cost is part of the hash).
	cheapen := func(key, password string) {
		t.Helper()
		stored, err := rdb.Get(ctx, userKey(key)).Bytes()
		if err != nil {
			t.Fatalf("no password stored for %q: %v", key, err)
		}
		if cost, err := bcrypt.Cost(stored); err != nil || cost < 10 {
			t.Fatalf("stored hash for %q: cost %d, %v; want a bcrypt hash of cost >= 10", key, cost, err)
		}
		if bcrypt.CompareHashAndPassword(stored, []byte(password)) != nil || bytes.Contains(stored, []byte(password)) {
			t.Fatalf("stored value for %q is not a bcrypt hash of the password", key)
		}
		h, _ := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		rdb.Set(ctx, userKey(key), h, 0)
	}

	expect("Alice", "correct horse", 303, "")
	cheapen("alice", "correct horse")
	expect("alice", "", 401, "is reserved")
	expect("ALICE", "", 401, "is reserved")
	expect("аlice", "", 401, "is reserved") // Cyrillic а
	expect("Ａｌｉｃｅ", "", 401, "is reserved")
	expect("alice", "battery staple", 401, "Wrong password")
	r := expect("ALICE", "correct horse", 303, "")
	who := rawRequest{method: "GET", path: "/whoami", cookie: sessionSetCookie(t, r).Value}.send(t, srv.URL, "")
	if who.status != 200 || !strings.Contains(who.body, `"user":"ALICE"`) || !strings.Contains(who.body, `"uid":"alice"`) {
		t.Fatalf("whoami after password login: %d %s", who.status, who.body)
	}
	// Names without a password stay open, as in the tutorial.
	expect("bob", "", 303, "")
	expect("bob", "", 303, "")

	// Password attempts for one name are limited: -rate-passwords 3.
	h, _ := bcrypt.GenerateFromPassword([]byte("dave's password"), bcrypt.MinCost)
	rdb.Set(ctx, userKey("dave"), h, 0)
	for i := 0; i < 3; i++ {
		expect("dave", fmt.Sprintf("guess %d!", i), 401, "Wrong password")
	}
	r = expect("Dave", "guess 4!", 429, "Too many password attempts")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %v", r.header)
	}
	expect("dave", "dave's password", 429, "Too many password attempts")
	// Another reserved name is not affected.
	expect("alice", "correct horse", 303, "")
}

// TestLoginRateLimit: logins per client address are limited, a spoofed
// X-Forwarded-For from an untrusted peer does not help, and behind a trusted
// proxy each client has its own budget.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	direct := startServer(t, rs.URL(), "-rate-logins", "3")
	loginFrom := func(base, xff string) rawResponse {
		hdr := map[string]string{}
		if xff != "" {
			hdr["X-Forwarded-For"] = xff
		}
		return rawRequest{method: "POST", path: "/login", body: formBody("user", "visitor"), header: hdr}.send(t, base, "")
	}
	for i := 0; i < 3; i++ {
		if r := loginFrom(direct.URL, fmt.Sprintf("192.0.2.%d", i)); r.status != 303 {
			t.Fatalf("login %d: %d %s", i, r.status, r.body)
		}
	}
	r := loginFrom(direct.URL, "192.0.2.99")
	if r.status != 429 || !strings.Contains(r.body, "Too many logins") {
		t.Fatalf("4th login: %d %.300s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("429 Retry-After %q", r.header.Get("Retry-After"))
	}

	proxied := startServer(t, rs.URL(), "-rate-logins", "2", "-trusted-proxies", "127.0.0.1")
	for i := 0; i < 2; i++ {
		if r := loginFrom(proxied.URL, "203.0.113.5"); r.status != 303 {
			t.Fatalf("client A login %d: %d", i, r.status)
		}
	}
	if r := loginFrom(proxied.URL, "203.0.113.5"); r.status != 429 {
		t.Fatalf("client A 3rd login: %d, want 429", r.status)
	}
	if r := loginFrom(proxied.URL, "198.51.100.7, 127.0.0.1"); r.status != 303 {
		t.Fatalf("client B behind the same proxy: %d, want 303", r.status)
	}
}

// TestStreamLimits: streams per login and per instance are capped, with a
// 429 and a 503 that say why; a closed stream frees its place.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-streams-per-session", "2", "-max-streams", "3", "-heartbeat", "100ms")
	alice := login(t, srv.URL, "alice")
	bob := login(t, srv.URL, "bob")
	a1 := alice.openStream("", "")
	alice.openStream("", "")
	r := alice.get("/stream")
	if r.StatusCode != 429 || !strings.Contains(r.body, "too many open chat windows") {
		t.Fatalf("3rd stream of one login: %d %q, want 429", r.StatusCode, r.body)
	}
	bob.openStream("", "") // another login still may: 3 of 3
	r = bob.get("/stream")
	if r.StatusCode != 503 || !strings.Contains(r.body, "too many open streams") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th stream of the instance: %d %q %v, want 503 with Retry-After", r.StatusCode, r.body, r.Header)
	}
	// A stream that ends frees its place once the server notices (at the
	// latest on a heartbeat write).
	a1.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", srv.URL+"/stream", nil)
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := bob.hc.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		status := resp.StatusCode
		resp.Body.Close()
		cancel()
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed stream's place not freed within 10 s (last status %d)", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSessionExpiry: a cookie past -session-max-age is refused by the server
// even when the client keeps sending it.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-session-max-age", "2s")
	c := loginCookie(t, srv.URL, "alice", "")
	if c.MaxAge != 2 {
		t.Fatalf("cookie Max-Age %d, want 2", c.MaxAge)
	}
	if r := (rawRequest{method: "GET", path: "/whoami", cookie: c.Value}).send(t, srv.URL, ""); r.status != 200 {
		t.Fatalf("fresh session refused: %d", r.status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := rawRequest{method: "GET", path: "/whoami", cookie: c.Value}.send(t, srv.URL, "")
		if r.status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still valid 10 s after a 2 s max age (%d)", r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, req := range []rawRequest{
		{method: "POST", path: "/post", body: formBody("message", "from the past"), cookie: c.Value},
		{method: "GET", path: "/stream", cookie: c.Value},
	} {
		if r := req.send(t, srv.URL, ""); r.status != 401 || !strings.Contains(r.body, "not logged in") {
			t.Errorf("%s %s with an expired cookie: %d %q", req.method, req.path, r.status, r.body)
		}
	}
	if r := (rawRequest{method: "GET", path: "/", cookie: c.Value}).send(t, srv.URL, ""); r.status != 303 || r.header.Get("Location") != "/login" {
		t.Errorf("chat page with an expired cookie: %d %v", r.status, r.header)
	}
}

// TestRateLimitSharedAcrossInstances: a user posting alternately to two
// instances gets one budget (-rate-posts 5 -rate-burst 10), not one each.
func TestRateLimitSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a := startServer(t, rs.URL(), "-rate-posts", "5", "-rate-burst", "10")
	b := startServer(t, rs.URL(), "-rate-posts", "5", "-rate-burst", "10")
	ca := login(t, a.URL, "speedy")
	cb := ca.withBase(b.URL)
	var accepted, limited [2]int
	var last429 response
	start := time.Now()
	for i := 0; i < 40; i++ {
		c := []*chatClient{ca, cb}[i%2]
		r := c.postForm("/post", url.Values{"message": {fmt.Sprintf("burst %d", i)}})
		switch r.StatusCode {
		case 204:
			accepted[i%2]++
		case 429:
			limited[i%2]++
			last429 = r
		default:
			t.Fatalf("post %d: %d %s", i, r.StatusCode, r.body)
		}
	}
	elapsed := time.Since(start)
	total := accepted[0] + accepted[1]
	// The burst, plus what the rate refilled meanwhile, plus one for rounding.
	allowed := 10 + int(5*elapsed.Seconds()) + 1
	t.Logf("40 posts in %v: accepted %v, limited %v (allowed at most %d)", elapsed, accepted, limited, allowed)
	if total > allowed {
		t.Fatalf("%d posts accepted across both instances, the shared budget allows %d", total, allowed)
	}
	if total < 10 {
		t.Fatalf("only %d posts accepted, the burst is 10", total)
	}
	if limited[0] == 0 || limited[1] == 0 {
		t.Fatalf("limited per instance %v: each instance must refuse some", limited)
	}
	if s, err := strconv.Atoi(last429.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("429 Retry-After %q", last429.Header.Get("Retry-After"))
	}
	if !strings.Contains(last429.body, "too fast") || !strings.Contains(last429.body, "5 per second") {
		t.Fatalf("429 body %q is not a readable reason", last429.body)
	}
}

// TestSessionKeyRotation: with a new key added first, cookies signed with the
// old key still work; once the old key is removed they do not.
func TestSessionKeyRotation(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	old := startServer(t, rs.URL(), "-session-keys", testSessionKey)
	both := startServer(t, rs.URL(), "-session-keys", newSessionKey+","+testSessionKey)
	onlyNew := startServer(t, rs.URL(), "-session-keys", newSessionKey)
	whoami := func(base, cookie string) int {
		t.Helper()
		r := rawRequest{method: "GET", path: "/whoami", cookie: cookie}.send(t, base, "")
		if r.status == 200 && !strings.Contains(r.body, `"user":"alice"`) {
			t.Fatalf("whoami: %s", r.body)
		}
		return r.status
	}
	oldCookie := loginCookie(t, old.URL, "alice", "").Value
	newCookie := loginCookie(t, both.URL, "alice", "").Value
	for _, tc := range []struct {
		server, cookie string
		base, value    string
		want           int
	}{
		{"old key", "old cookie", old.URL, oldCookie, 200},
		{"new,old keys", "old cookie", both.URL, oldCookie, 200},
		{"new,old keys", "new cookie", both.URL, newCookie, 200},
		{"new key only", "new cookie", onlyNew.URL, newCookie, 200},
		{"new key only", "old cookie", onlyNew.URL, oldCookie, 401},
		{"old key", "new cookie", old.URL, newCookie, 401}, // the first key signs
	} {
		if got := whoami(tc.base, tc.value); got != tc.want {
			t.Errorf("server with %s, %s: /whoami %d, want %d", tc.server, tc.cookie, got, tc.want)
		}
	}
	// The old cookie also posts through the rotated server.
	r := rawRequest{method: "POST", path: "/post", body: formBody("message", "still here"), cookie: oldCookie}.send(t, both.URL, "")
	if r.status != 204 {
		t.Fatalf("post with old cookie after rotation: %d %s", r.status, r.body)
	}
}

// shown is the part of a response body worth printing: the error paragraph
// of a page, or the start of the body.
func shown(body string) string {
	if _, after, ok := strings.Cut(body, `role="alert">`); ok {
		msg, _, _ := strings.Cut(after, "<")
		return "page error: " + html.UnescapeString(msg)
	}
	if len(body) > 300 {
		return body[:300] + "…"
	}
	return body
}

// TestLoginRateLimitCountsOnlyWellFormed: malformed names get their 400
// without using up the per-IP login budget, so a typo or a table of bad
// requests cannot lock an address out; a huge name is refused cheaply.
func TestLoginRateLimitCountsOnlyWellFormed(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-logins", "2")
	c := newClient(t, srv.URL)
	for _, bad := range []string{"", "   ", "a\x00b", strings.Repeat("x", 33), strings.Repeat("y", 10000), "\u202eevil"} {
		if resp := c.postForm("/login", url.Values{"user": {bad}}); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("login %q: %d, want 400", clip(bad, 20), resp.StatusCode)
		}
	}
	login(t, srv.URL, "alice")
	login(t, srv.URL, "bob")
	resp := c.postForm("/login", url.Values{"user": {"carol"}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third well-formed login: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
