package main

import (
	"bufio"
	"bytes"
	"chatroom/internal/chat"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestHandlerRoutes is the table of every route: the status, content type,
// readable body and headers each request gets, good input and bad, with and
// without a session. No answer may be a 500.
func TestHandlerRoutes(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	anon := newClient(t, srv.URL)
	alice := login(t, srv.URL, "alice")
	leaver := login(t, srv.URL, "leaver")

	appJS, err := assets.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	styleCSS, err := assets.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}

	multipartLogin := func() (string, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.WriteField("user", "carol")
		mw.Close()
		return b.String(), mw.FormDataContentType()
	}
	mpBody, mpType := multipartLogin()

	const (
		html  = "text/html; charset=utf-8"
		plain = "text/plain; charset=utf-8"
		js    = "application/json"
	)
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	const formType = "application/x-www-form-urlencoded"

	tests := []struct {
		name        string
		client      *chatClient
		method      string
		path        string
		body        string // sent with bodyType when non-empty or bodyType set
		bodyType    string
		status      int
		contentType string   // exact, when set
		contains    []string // substrings of the body
		exactBody   []byte   // when set, the body must be exactly this
		header      map[string]string
	}{
		// GET /
		{name: "chat page without session redirects to login", client: anon, method: "GET", path: "/",
			status: 303, header: map[string]string{"Location": "/login"}},
		{name: "chat page with session", client: alice, method: "GET", path: "/",
			status: 200, contentType: html, contains: []string{`Hi, <b id="me" dir="auto" title="alice">alice</b>!`, `id="messages"`, `src="/static/app.js"`}},

		// GET /login
		{name: "login form", client: anon, method: "GET", path: "/login",
			status: 200, contentType: html, contains: []string{`<form action="/login" method="post"`, `name="user"`}},

		// POST /login
		{name: "login good name", client: newClient(t, srv.URL), method: "POST", path: "/login",
			body: form("user", "bob"), bodyType: formType, status: 303, header: map[string]string{"Location": "/"}},
		{name: "login multipart form", client: newClient(t, srv.URL), method: "POST", path: "/login",
			body: mpBody, bodyType: mpType, status: 303, header: map[string]string{"Location": "/"}},
		{name: "login empty name", client: newClient(t, srv.URL), method: "POST", path: "/login",
			body: form("user", ""), bodyType: formType, status: 400, contentType: html,
			contains: []string{`id="login-error"`, "name is empty: choose a name of 1 to 32 characters", `name="user"`}},
		{name: "login whitespace-only name", client: newClient(t, srv.URL), method: "POST", path: "/login",
			body: form("user", "   \u00a0\u3000 "), bodyType: formType, status: 400, contentType: html,
			contains: []string{`id="login-error"`, "name is empty", `name="user"`}},
		{name: "login missing field", client: newClient(t, srv.URL), method: "POST", path: "/login",
			body: form("name", "bob"), bodyType: formType, status: 400, contentType: html,
			contains: []string{`id="login-error"`, "the field &#34;user&#34; is missing"}},
		{name: "login without any body", client: newClient(t, srv.URL), method: "POST", path: "/login",
			status: 400, contentType: html, contains: []string{`id="login-error"`, "the field &#34;user&#34; is missing"}},

		// POST /post
		{name: "post message", client: alice, method: "POST", path: "/post",
			body: form("message", "hello table"), bodyType: formType, status: 204, exactBody: []byte{}},
		{name: "post empty message", client: alice, method: "POST", path: "/post",
			body: form("message", ""), bodyType: formType, status: 400, contentType: plain,
			contains: []string{"message is empty: type something before sending"}},
		{name: "post whitespace-only message", client: alice, method: "POST", path: "/post",
			body: form("message", " \r\n\t "), bodyType: formType, status: 400, contentType: plain,
			contains: []string{"message is empty"}},
		{name: "post missing field", client: alice, method: "POST", path: "/post",
			body: form("text", "hi"), bodyType: formType, status: 400, contentType: plain,
			contains: []string{`the field "message" is missing`}},
		{name: "post without any body", client: alice, method: "POST", path: "/post",
			status: 400, contentType: plain, contains: []string{`the field "message" is missing`}},
		{name: "post without session", client: anon, method: "POST", path: "/post",
			body: form("message", "hi"), bodyType: formType, status: 401, contentType: plain,
			contains: []string{"not logged in"}},

		// POST /logout
		{name: "logout", client: leaver, method: "POST", path: "/logout",
			status: 303, header: map[string]string{"Location": "/login"}},
		{name: "logout without session", client: anon, method: "POST", path: "/logout",
			status: 303, header: map[string]string{"Location": "/login"}},

		// GET /stream (the open stream itself: TestHandlerStreamOpensAtOnce)
		{name: "stream without session", client: anon, method: "GET", path: "/stream",
			status: 401, contentType: plain, contains: []string{"not logged in"}},

		// GET /whoami
		{name: "whoami without session", client: anon, method: "GET", path: "/whoami",
			status: 401, contentType: plain, contains: []string{"not logged in"}},
		{name: "whoami with session", client: alice, method: "GET", path: "/whoami",
			status: 200, contentType: js, contains: []string{`"user":"alice"`, `"uid":"alice"`}},

		// GET /healthz, GET /readyz
		{name: "healthz", client: anon, method: "GET", path: "/healthz",
			status: 200, contentType: plain, contains: []string{"ok"}},
		{name: "readyz", client: anon, method: "GET", path: "/readyz",
			status: 200, contentType: plain, exactBody: []byte("ok\n")},

		// GET /static/…
		{name: "static app.js", client: anon, method: "GET", path: "/static/app.js",
			status: 200, contentType: "text/javascript; charset=utf-8", exactBody: appJS},
		{name: "static style.css", client: anon, method: "GET", path: "/static/style.css",
			status: 200, contentType: "text/css; charset=utf-8", exactBody: styleCSS},
		{name: "static directory listing refused", client: anon, method: "GET", path: "/static/",
			status: 404},
		{name: "static missing file", client: anon, method: "GET", path: "/static/nope.js",
			status: 404},
		{name: "templates are not static files", client: anon, method: "GET", path: "/static/chat.html",
			status: 404},

		// Wrong methods.
		{name: "GET /post", client: alice, method: "GET", path: "/post", status: 405,
			contains: []string{"Method Not Allowed"}, header: map[string]string{"Allow": "POST"}},
		{name: "PUT /login", client: anon, method: "PUT", path: "/login", body: form("user", "x"), bodyType: formType,
			status: 405, contains: []string{"Method Not Allowed"}, header: map[string]string{"Allow": "GET, HEAD, POST"}},
		{name: "POST /stream", client: alice, method: "POST", path: "/stream", status: 405,
			contains: []string{"Method Not Allowed"}, header: map[string]string{"Allow": "GET, HEAD"}},
		{name: "GET /logout", client: alice, method: "GET", path: "/logout", status: 405,
			header: map[string]string{"Allow": "POST"}},
		{name: "DELETE /", client: alice, method: "DELETE", path: "/", status: 405},
		{name: "PATCH /post", client: alice, method: "PATCH", path: "/post", body: form("message", "x"), bodyType: formType, status: 405},
		{name: "POST /whoami", client: alice, method: "POST", path: "/whoami", status: 405},
		{name: "POST /healthz", client: anon, method: "POST", path: "/healthz", status: 405},
		{name: "POST /readyz", client: anon, method: "POST", path: "/readyz", status: 405},
		{name: "POST /static/app.js", client: anon, method: "POST", path: "/static/app.js", status: 405},

		// Unknown paths.
		{name: "unknown path", client: anon, method: "GET", path: "/nope", status: 404, contains: []string{"404 page not found"}},
		{name: "unknown path with session", client: alice, method: "GET", path: "/index.html", status: 404},
		{name: "unknown path POST", client: alice, method: "POST", path: "/send", body: form("message", "x"), bodyType: formType, status: 404},
		{name: "login with trailing slash", client: anon, method: "GET", path: "/login/", status: 404},
		{name: "stream subpath", client: alice, method: "GET", path: "/stream/x", status: 404},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bodyType != "" {
				req.Header.Set("Content-Type", tc.bodyType)
			}
			c := *tc.client
			c.t = t
			resp := c.do(req)
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s: server error %d: %s", tc.method, tc.path, resp.StatusCode, resp.body)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body: %s", tc.method, tc.path, resp.StatusCode, tc.status, resp.body)
			}
			if tc.contentType != "" {
				if got := resp.Header.Get("Content-Type"); got != tc.contentType {
					t.Errorf("Content-Type %q, want %q", got, tc.contentType)
				}
			}
			for _, s := range tc.contains {
				if !strings.Contains(resp.body, s) {
					t.Errorf("body lacks %q:\n%s", s, resp.body)
				}
			}
			if tc.exactBody != nil && resp.body != string(tc.exactBody) {
				t.Errorf("body is %d bytes %q…, want the %d bytes expected", len(resp.body), clip(resp.body, 80), len(tc.exactBody))
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if resp.StatusCode >= 400 && strings.TrimSpace(resp.body) == "" {
				t.Errorf("error %d has no readable message", resp.StatusCode)
			}
			if resp.StatusCode >= 400 && resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("an error answer sets a cookie: %q", resp.Header.Get("Set-Cookie"))
			}
		})
	}

	// The server still serves normally after all that, and never logged a
	// panic or an error.
	if got := alice.get("/whoami"); got.StatusCode != 200 {
		t.Errorf("whoami after the table: %d %s", got.StatusCode, got.body)
	}
	if logs := srv.logs.String(); strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "panic") {
		t.Errorf("server logged errors:\n%s", logs)
	}
}

// TestHandlerLoginCookie checks the session cookie's attributes: HttpOnly,
// SameSite=Lax, path /, bounded lifetime, and not Secure over plain HTTP
// without a trusted proxy (a Secure cookie would never come back).
func TestHandlerLoginCookie(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	c := newClient(t, srv.URL)
	resp := c.postForm("/login", url.Values{"user": {"  Alice  "}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), resp.body)
	}
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == sessionCookie {
			ck = k
		}
	}
	if ck == nil {
		t.Fatalf("no %s cookie in %q", sessionCookie, resp.Header.Values("Set-Cookie"))
	}
	raw := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
	switch {
	case !ck.HttpOnly:
		t.Errorf("cookie is not HttpOnly: %s", raw)
	case ck.SameSite != http.SameSiteLaxMode:
		t.Errorf("cookie is not SameSite=Lax: %s", raw)
	case ck.Path != "/":
		t.Errorf("cookie path %q: %s", ck.Path, raw)
	case ck.MaxAge <= 0 || ck.MaxAge > 31*24*3600:
		t.Errorf("cookie Max-Age %d not bounded: %s", ck.MaxAge, raw)
	case ck.Secure:
		t.Errorf("cookie is Secure on plain HTTP: %s", raw)
	case ck.Value == "" || strings.Contains(ck.Value, "Alice"):
		t.Errorf("cookie value is empty or readable: %s", raw)
	}
	// The name was trimmed; the page greets it.
	page := c.get("/")
	if page.StatusCode != 200 || !strings.Contains(page.body, `<b id="me" dir="auto" title="Alice">Alice</b>`) {
		t.Fatalf("page after login: %d\n%s", page.StatusCode, page.body)
	}
}

// TestHandlerLogout logs out (the cookie is cleared, / redirects again, the
// stream and posting refuse) and then logs in as someone else.
func TestHandlerLogout(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	c := login(t, srv.URL, "alice")
	if got := c.get("/"); got.StatusCode != 200 || !strings.Contains(got.body, `<b id="me" dir="auto" title="alice">alice</b>`) {
		t.Fatalf("before logout: %d", got.StatusCode)
	}

	resp := c.postForm("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cleared := false
	for _, k := range resp.Cookies() {
		if k.Name == sessionCookie && k.MaxAge < 0 && k.Value == "" {
			cleared = true
		}
	}
	if !cleared {
		t.Fatalf("logout did not clear the cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	u, _ := url.Parse(srv.URL)
	if cks := c.hc.Jar.Cookies(u); len(cks) != 0 {
		t.Fatalf("the client still holds cookies after logout: %v", cks)
	}
	if got := c.get("/"); got.StatusCode != http.StatusSeeOther || got.Header.Get("Location") != "/login" {
		t.Fatalf("/ after logout: %d %q, want 303 to /login", got.StatusCode, got.Header.Get("Location"))
	}
	if got := c.postForm("/post", url.Values{"message": {"ghost"}}); got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("post after logout: %d", got.StatusCode)
	}
	if got := c.get("/stream"); got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream after logout: %d", got.StatusCode)
	}

	// Log in as someone else with the same browser.
	resp = c.postForm("/login", url.Values{"user": {"bob"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second login: %d %s", resp.StatusCode, resp.body)
	}
	page := c.get("/")
	if page.StatusCode != 200 || !strings.Contains(page.body, `<b id="me" dir="auto" title="bob">bob</b>`) || strings.Contains(page.body, `<b id="me" dir="auto" title="alice">alice</b>`) {
		t.Fatalf("page after logging in as bob: %d\n%s", page.StatusCode, page.body)
	}
	if got := c.get("/whoami"); !strings.Contains(got.body, `"user":"bob"`) {
		t.Fatalf("whoami after second login: %s", got.body)
	}
	stream := c.openStream("", "")
	c.post("bob is here")
	if got := stream.collectMessages(t, 1, 5*time.Second); len(got) != 1 || got[0].User != "bob" {
		t.Fatalf("message after second login: %+v", got)
	}
}

// TestHandlerChatPage checks the server-rendered page: the greeting, the
// recent messages in order with sender, time and own/other marking, user
// text escaped, and the last rendered ID for the stream to start after.
func TestHandlerChatPage(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	bob := login(t, srv.URL, "bob")
	stream := alice.openStream("", "")
	texts := []string{"first from alice", "<img src=x onerror=alert(1)> & friends", "line one\nline two"}
	alice.post(texts[0])
	bob.post(texts[1])
	alice.post(texts[2])
	sent := stream.collectMessages(t, 3, 5*time.Second)
	if len(sent) != 3 {
		t.Fatalf("stream got %d of 3 messages", len(sent))
	}

	resp := alice.get("/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	if strings.Contains(resp.body, "<img src=x") {
		t.Fatalf("user text reached the page unescaped:\n%s", resp.body)
	}
	doc := parseHTMLDoc(t, resp.body)
	if me := doc.find(byID("me")); len(me) != 1 || me[0].text() != "alice" {
		t.Fatalf("greeting element #me: %v", me)
	}
	if hello := doc.find(byClass("hello")); len(hello) != 1 || !strings.Contains(hello[0].text(), "Hi, alice") {
		t.Fatalf("no greeting for alice")
	}
	body := doc.find(func(n *htmlNode) bool { return n.name == "body" })
	if len(body) != 1 || body[0].attr["data-last-id"] != sent[2].ID {
		t.Fatalf("data-last-id = %q, want %q (the last rendered message)", body[0].attr["data-last-id"], sent[2].ID)
	}
	items := doc.find(byClass("msg"))
	if len(items) != 3 {
		t.Fatalf("page renders %d messages, want 3", len(items))
	}
	for i, li := range items {
		want := sent[i]
		user := li.find(byClass("user"))
		text := li.find(byClass("text"))
		tm := li.find(func(n *htmlNode) bool { return n.name == "time" })
		if li.attr["data-id"] != want.ID || len(user) != 1 || user[0].text() != want.User || len(text) != 1 || text[0].text() != want.Text {
			t.Errorf("message %d: id %q user %v text %v; want %+v", i, li.attr["data-id"], user, text, want)
			continue
		}
		if len(tm) != 1 {
			t.Errorf("message %d has no <time>", i)
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, tm[0].attr["datetime"]); err != nil || !ts.Equal(want.Time) {
			t.Errorf("message %d datetime %q, want %v", i, tm[0].attr["datetime"], want.Time)
		}
		own := strings.Contains(" "+li.attr["class"]+" ", " own ")
		if own != (want.User == "alice") {
			t.Errorf("message %d from %s: own=%v on alice's page", i, want.User, own)
		}
	}
}

// TestHandlerStreamOpensAtOnce checks, in both stream modes, that /stream
// answers with the SSE headers and a retry: line before any message exists,
// then delivers a post as id/event/data.
func TestHandlerStreamOpensAtOnce(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range []string{"pooled", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-stream-mode", mode)
			alice := login(t, srv.URL, "alice")
			u, _ := url.Parse(srv.URL)
			var cookies []string
			for _, k := range alice.hc.Jar.Cookies(u) {
				cookies = append(cookies, k.String())
			}

			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			conn.SetDeadline(start.Add(10 * time.Second))
			fmt.Fprintf(conn, "GET /stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCookie: %s\r\n\r\n", u.Host, strings.Join(cookies, "; "))
			req, _ := http.NewRequest("GET", srv.URL+"/stream", nil)
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			br := bufio.NewReader(resp.Body)
			first, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("no first line: %v", err)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("first line took %v", elapsed)
			}
			if !regexp.MustCompile(`^retry: \d+\n$`).MatchString(first) {
				t.Fatalf("first line %q, want retry: <ms>", first)
			}
			// The rest of the prelude up to its blank line: no event yet.
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("prelude: %v", err)
				}
				if line == "\n" {
					break
				}
				if !strings.HasPrefix(line, ":") {
					t.Fatalf("unexpected prelude line %q", line)
				}
			}

			alice.post("over the wire")
			var lines []string
			for len(lines) == 0 || slices.ContainsFunc(lines, func(l string) bool {
				e, ok := strings.CutPrefix(l, "event: ")
				return ok && roomSignal(e)
			}) {
				lines = nil // the online list and joins come first; the message follows
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading event: %v (so far %q)", err, lines)
					}
					if strings.HasPrefix(line, ":") { // heartbeat
						continue
					}
					if line == "\n" {
						break
					}
					lines = append(lines, strings.TrimSuffix(line, "\n"))
				}
			}
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "id: ") || lines[1] != "event: message" || !strings.HasPrefix(lines[2], "data: ") {
				t.Fatalf("event lines %q, want id/event/data", lines)
			}
			var m chat.Message
			if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[2], "data: ")), &m); err != nil {
				t.Fatal(err)
			}
			if m.ID != strings.TrimPrefix(lines[0], "id: ") || m.User != "alice" || m.Text != "over the wire" || m.Time.IsZero() {
				t.Fatalf("event data %+v", m)
			}
		})
	}
}

// TestHandlerPageHasNoInlineCode parses the login and chat pages: every
// script is external (src, no body), there are no style elements or
// attributes and no inline event handlers, every URL is same-site, and the
// CSP forbids inline code. Together with the CSP, inline code would break the page.
func TestHandlerPageHasNoInlineCode(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	alice.post("some text so the list is not empty")
	for _, path := range []string{"/", "/login"} {
		resp := alice.get(path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "style-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q allows inline code", path, csp)
		}
		doc := parseHTMLDoc(t, resp.body)
		scripts := 0
		for _, n := range doc.find(func(*htmlNode) bool { return true }) {
			switch n.name {
			case "script":
				scripts++
				if n.attr["src"] == "" || strings.TrimSpace(n.text()) != "" {
					t.Errorf("GET %s: inline script (src=%q, body %q)", path, n.attr["src"], n.text())
				}
			case "style":
				t.Errorf("GET %s: <style> element", path)
			}
			for k, v := range n.attr {
				switch {
				case k == "style":
					t.Errorf("GET %s: style attribute on <%s>: %q", path, n.name, v)
				case strings.HasPrefix(k, "on"):
					t.Errorf("GET %s: inline handler %s on <%s>", path, k, n.name)
				case k == "src" || k == "href" || k == "action":
					if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") {
						t.Errorf("GET %s: <%s %s=%q> is not a same-site path", path, n.name, k, v)
					}
				}
			}
		}
		if path == "/" && scripts != 4 {
			t.Errorf("chat page has %d scripts, want 4 (static/theme.js, static/tabs.js, static/app.js, static/moderation.js)", scripts)
		}
	}
}

// TestHandlerAssetsNoExternalHost reads every embedded template and static
// file: none names an external host (no CDN; the page works offline).
func TestHandlerAssetsNoExternalHost(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9-]+(\.[a-z0-9-]+)+`)
	cssURL := regexp.MustCompile(`(?i)url\(\s*['"]?([^'")]+)`)
	xmlns := regexp.MustCompile(`\bxmlns(:[a-z]+)?="http://www\.w3\.org/[^"]*"`)
	files := 0
	err := fs.WalkDir(assets, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		// An XML namespace (SVG's xmlns) is a name, not a resource fetched.
		s := xmlns.ReplaceAllString(string(b), "")
		for _, scheme := range []string{"http://", "https://"} {
			if i := strings.Index(strings.ToLower(s), scheme); i >= 0 {
				t.Errorf("%s mentions %q", path, s[i:min(len(s), i+60)])
			}
		}
		if strings.HasSuffix(path, ".html") || strings.HasSuffix(path, ".css") {
			for _, m := range external.FindAllString(s, -1) {
				t.Errorf("%s references an external host: %q", path, m)
			}
		}
		if !strings.HasSuffix(path, ".js") { // url(…) is CSS; in JS it is a call
			for _, m := range cssURL.FindAllStringSubmatch(s, -1) {
				if !strings.HasPrefix(m[1], "/") && !strings.HasPrefix(m[1], "data:") {
					t.Errorf("%s: url(%s) is not same-site", path, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("only %d embedded files found", files)
	}
}

// htmlNode is an element of a page parsed by parseHTMLDoc.
type htmlNode struct {
	name     string
	attr     map[string]string
	children []*htmlNode
	texts    []string // character data directly inside, in order
	all      []string // character data of the whole subtree, in order
}

// parseHTMLDoc parses our templates' HTML with encoding/xml in its lenient
// HTML mode (void elements auto-closed, HTML entities known).
func parseHTMLDoc(t testing.TB, s string) *htmlNode {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	root := &htmlNode{name: "#document", attr: map[string]string{}}
	stack := []*htmlNode{root}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("parse page: %v\n%s", err, s)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			n := &htmlNode{name: strings.ToLower(tk.Name.Local), attr: map[string]string{}}
			for _, a := range tk.Attr {
				name := a.Name.Local
				if a.Name.Space != "" {
					name = a.Name.Space + ":" + name
				}
				n.attr[strings.ToLower(name)] = a.Value
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			stack[len(stack)-1].texts = append(stack[len(stack)-1].texts, string(tk))
			for _, n := range stack {
				n.all = append(n.all, string(tk))
			}
		}
	}
	return root
}

// find returns the matching elements below n, in document order.
func (n *htmlNode) find(match func(*htmlNode) bool) []*htmlNode {
	var out []*htmlNode
	for _, c := range n.children {
		if match(c) {
			out = append(out, c)
		}
		out = append(out, c.find(match)...)
	}
	return out
}

// text is the text content of n's subtree.
func (n *htmlNode) text() string { return strings.Join(n.all, "") }

func (n *htmlNode) String() string { return fmt.Sprintf("<%s %v>%q", n.name, n.attr, n.text()) }

func byID(id string) func(*htmlNode) bool {
	return func(n *htmlNode) bool { return n.attr["id"] == id }
}

func byClass(class string) func(*htmlNode) bool {
	return func(n *htmlNode) bool {
		return strings.Contains(" "+n.attr["class"]+" ", " "+class+" ")
	}
}
