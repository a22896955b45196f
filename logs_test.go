package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// The logs (issue 12): one line per request and one per stream that ended,
// in text or JSON (-log-format), never with message text, cookies or
// passwords.

// jsonLines parses the JSON log lines of logs with the given msg.
func jsonLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("a log line is not JSON: %v: %q", err, sc.Text())
		}
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

func TestRequestAndStreamLogsJSON(t *testing.T) {
	rs := redistest.Start(t)
	// A pooled stream's close is noticed at its next write: heartbeats often.
	srv := startServer(t, rs.URL(), "-log-format", "json", "-rate-posts", "0", "-heartbeat", "200ms")
	const (
		password = "hunter2-secret-password"
		text     = "the secret message text 7319"
		query    = "needle4242"
	)
	alice := newClient(t, srv.URL)
	resp := alice.postForm("/login", url.Values{"user": {"alice"}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.body)
	}
	loginID := resp.Header.Get("X-Request-ID")
	alice.post(text)
	alice.get("/r/chat/search?q=" + query)
	// A client's own X-Request-ID is not believed (no trusted proxy).
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/healthz", nil)
	req.Header.Set("X-Request-ID", "forged-id")
	if got := alice.do(req).Header.Get("X-Request-ID"); got == "forged-id" || got == "" {
		t.Errorf("X-Request-ID %q: a client's forged ID was kept, or none was sent", got)
	}
	// A stream that gets three messages and ends.
	s := alice.openStream("", "")
	for _, m := range []string{"one", "two", "three"} {
		alice.post(m)
	}
	s.collectMessages(t, 3, 10*time.Second)
	s.Close()
	waitFor(t, 10*time.Second, "the stream's close is logged", func() bool {
		return len(jsonLines(t, srv.logs.String(), "stream closed")) > 0
	})

	logs := srv.logs.String()
	requests := jsonLines(t, logs, "request")
	find := func(method, route string) map[string]any {
		for _, l := range requests {
			if l["method"] == method && l["route"] == route {
				return l
			}
		}
		t.Errorf("no request line for %s %s in:\n%s", method, route, logs)
		return nil
	}
	for _, want := range []struct {
		method, route string
		status        float64
	}{
		{"POST", "POST /login", 303},
		{"POST", "POST /post", 204},
		{"GET", "GET /r/{room}/search", 200},
		{"GET", "GET /stream", 200},
	} {
		l := find(want.method, want.route)
		if l == nil {
			continue
		}
		if l["status"] != want.status {
			t.Errorf("%s: status %v, want %v", want.route, l["status"], want.status)
		}
		for _, field := range []string{"duration", "bytes", "request_id"} {
			if _, ok := l[field]; !ok {
				t.Errorf("%s: no %s in %v", want.route, field, l)
			}
		}
	}
	if l := find("POST", "POST /login"); l != nil && l["request_id"] != loginID {
		t.Errorf("the login's line has request_id %v, its response said %q", l["request_id"], loginID)
	}
	ids := map[any]bool{}
	for _, l := range requests {
		if ids[l["request_id"]] {
			t.Errorf("request_id %v logged twice", l["request_id"])
		}
		ids[l["request_id"]] = true
	}

	closed := jsonLines(t, logs, "stream closed")[0]
	if rooms, _ := closed["rooms"].([]any); !slices.Equal(rooms, []any{"chat"}) {
		t.Errorf("stream closed: rooms %v, want [chat]", closed["rooms"])
	}
	if closed["reason"] != "client-gone" {
		t.Errorf("stream closed: reason %v, want client-gone", closed["reason"])
	}
	if n, _ := closed["events"].(float64); n < 3 {
		t.Errorf("stream closed: %v events, want at least the 3 messages", closed["events"])
	}
	if _, ok := closed["duration"]; !ok {
		t.Errorf("stream closed: no duration: %v", closed)
	}

	// Nothing private, anywhere in the log.
	u, _ := url.Parse(srv.URL)
	secrets := []string{password, text, query}
	for _, c := range alice.hc.Jar.Cookies(u) {
		secrets = append(secrets, c.Value)
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// TestRequestLogText: the default format is text, one key=value line per
// request.
func TestRequestLogText(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	login(t, srv.URL, "bob")
	waitFor(t, 10*time.Second, "the login's line", func() bool {
		return strings.Contains(srv.logs.String(), `msg=request method=POST route="POST /login" status=303`)
	})
}
