package main

import (
	"chatroom/internal/chat"
	"chatroom/internal/sse"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is a chat server started through run, in this process.
type testServer struct {
	URL  string
	logs *logBuffer
	stop func() // graceful shutdown; waits for run to return
}

// testLimitFlags are added to every test server's flags: every test runs
// from one loopback address and posts with fresh names, so the limits per
// address, per room and for new names are off unless a test sets them
// (limits_test.go does); each has a private metrics listener on a free
// loopback port (serverCounters).
var testLimitFlags = []string{"-streams-per-addr", "0", "-conns-per-addr", "0", "-rate-posts-addr", "0",
	"-rate-posts-room", "0", "-new-name-posts", "0", "-metrics-addr", "127.0.0.1:0"}

// startServer runs the chat server on a free loopback port against redisURL
// and waits until /readyz says delivery works. Extra flags override the
// test defaults. The server is shut down at cleanup.
func startServer(t testing.TB, redisURL string, extra ...string) *testServer {
	t.Helper()
	return startServerWith(t, redisURL, options{}, extra...)
}

// startServerWith is startServer with test options (Redis hooks).
func startServerWith(t testing.TB, redisURL string, opts options, extra ...string) *testServer {
	t.Helper()
	args := append([]string{"chatroom", "-addr", "127.0.0.1:0", "-redis", redisURL,
		"-rate-logins", "0", "-probe-interval", "200ms", "-probe-timeout", "1s",
		"-shutdown-timeout", "5s", "-log-level", "debug"}, testLimitFlags...)
	args = append(args, extra...)
	return runServerWith(t, args, func(string) string { return "" }, opts)
}

// runServer calls run with exactly args and getenv, waits until it logs
// its URL and /readyz says ready, and stops it at cleanup.
func runServer(t testing.TB, args []string, getenv func(string) string) *testServer {
	t.Helper()
	return runServerWith(t, args, getenv, options{})
}

func runServerWith(t testing.TB, args []string, getenv func(string) string, opts options) *testServer {
	t.Helper()
	logs := newLogBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runWith(ctx, args, getenv, logs, opts) }()
	var base string
	select {
	case base = <-logs.url:
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, logs)
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatalf("server did not log its URL in time\n%s", logs)
	}
	var once sync.Once
	ts := &testServer{URL: base, logs: logs}
	ts.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run returned %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("server did not stop within 15 s\n%s", logs)
			}
		})
	}
	t.Cleanup(ts.stop)
	waitReady(t, base)
	return ts
}

// waitReady polls /readyz until it answers 200.
func waitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	hc := probeClient(base)
	for {
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready within 20 s (last: %v)", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeClient is the client for a test server's /readyz: the default one,
// or over HTTPS one that accepts the test's self-signed certificate.
func probeClient(base string) *http.Client {
	if strings.HasPrefix(base, "https:") {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	return http.DefaultClient
}

// logBuffer collects a server's log and reports the URL it listens on.
type logBuffer struct {
	mu   sync.Mutex // guards b and sent
	b    strings.Builder
	url  chan string
	sent bool
}

// readyLine finds the URL in the "chat is ready" line, in text or JSON logs.
var readyLine = regexp.MustCompile(`msg="chat is ready" url=(\S+)|"msg":"chat is ready".*?"url":"([^"]+)"`)

func newLogBuffer() *logBuffer { return &logBuffer{url: make(chan string, 1)} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if !l.sent {
		if m := readyLine.FindStringSubmatch(l.b.String()); m != nil {
			l.sent = true
			l.url <- m[1] + m[2]
		}
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loggedServer is a test server of either kind, in this process
// (testServer) or a child process (serverProcess), through its log.
type loggedServer interface{ log() *logBuffer }

func (s *testServer) log() *logBuffer    { return s.logs }
func (p *serverProcess) log() *logBuffer { return p.logs }

// counters are the server's counts that tests wait on.
type counters struct {
	Ready           bool  // delivery through Redis works
	Streams         int   // open streams, both modes
	Evictions       int   // streams the server closed as slow or stalled
	BrokerDelivered int64 // events the broker handed to the hub
}

// serverCounters reads srv's counters from its private metrics listener
// (testLimitFlags gives every test server one; its log says where).
func serverCounters(t *testing.T, srv loggedServer) counters {
	t.Helper()
	m := scrape(t, metricsURL(t, srv.log()))
	return counters{
		Ready:           m[`chat_ready`] == 1,
		Streams:         int(m[`chat_streams_open{mode="pooled"}`] + m[`chat_streams_open{mode="goroutine"}`]),
		Evictions:       int(m[`chat_stream_closes_total{reason="slow"}`] + m[`chat_stream_closes_total{reason="stalled"}`]),
		BrokerDelivered: int64(m[`chat_broker_events_total{kind="delivered"}`]),
	}
}

// metricsURL waits until logs has the "metrics listening" line and returns
// its URL; it fails t if the line does not come (no -metrics-addr).
func metricsURL(t *testing.T, logs *logBuffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := metricsLine.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics listener in the server's log within 10 s (was -metrics-addr overridden or off?):\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chatClient is one user's HTTP client, with its own cookie jar.
type chatClient struct {
	t    testing.TB
	base string
	hc   *http.Client
}

// newClient returns a client of base that does not follow redirects (so
// tests see the 303s) and is not logged in.
func newClient(t testing.TB, base string) *chatClient {
	jar, _ := cookiejar.New(nil)
	return &chatClient{t: t, base: base, hc: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// login logs in as name and fails the test unless it succeeds.
func login(t testing.TB, base, name string) *chatClient {
	t.Helper()
	c := newClient(t, base)
	resp := c.postForm("/login", url.Values{"user": {name}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %q: status %d: %s", name, resp.StatusCode, resp.body)
	}
	return c
}

// withBase returns a client sharing c's cookies but talking to another instance.
func (c *chatClient) withBase(base string) *chatClient {
	u, _ := url.Parse(c.base)
	u2, _ := url.Parse(base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		c.hc.Jar.SetCookies(u2, []*http.Cookie{ck})
	}
	return &chatClient{t: c.t, base: base, hc: c.hc}
}

type response struct {
	*http.Response
	body string
}

func (c *chatClient) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, string(b)}
}

func (c *chatClient) get(path string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

func (c *chatClient) postForm(path string, v url.Values) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// post sends a message and fails the test unless it gets 204.
func (c *chatClient) post(text string) {
	c.t.Helper()
	resp := c.postForm("/post", url.Values{"message": {text}})
	if resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("post %q: status %d: %s", text, resp.StatusCode, resp.body)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
}

// sseStream is an open /stream, parsed in a goroutine.
type sseStream struct {
	Events chan sseEvent // closed when the stream ends
	resp   *http.Response
	cancel context.CancelFunc
	done   chan struct{}
}

// openStream opens /stream with an optional Last-Event-ID header (and
// optional raw query) and waits for the response headers.
func (c *chatClient) openStream(lastEventID, query string) *sseStream {
	c.t.Helper()
	return c.openStreamPaused(lastEventID, query, nil)
}

// openStreamPaused is openStream whose reader starts reading only once
// resume is closed (nil: at once): a client that stops reading.
func (c *chatClient) openStreamPaused(lastEventID, query string, resume <-chan struct{}) *sseStream {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := c.base + "/stream"
	if query != "" {
		u += "?" + query
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		c.t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		c.t.Fatalf("open stream: status %d: %s", resp.StatusCode, b)
	}
	s := &sseStream{Events: make(chan sseEvent, 100000), resp: resp, cancel: cancel, done: make(chan struct{})}
	go func() {
		if resume != nil {
			select {
			case <-resume:
			case <-ctx.Done():
			}
		}
		s.read()
	}()
	c.t.Cleanup(s.Close)
	return s
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.Events)
	readSSE(s.resp.Body, func(ev sseEvent) { s.Events <- ev })
}

// readSSE parses an event stream as EventSource does (internal/sse) and
// calls emit for each dispatched event (an event cut off by the end of the
// stream is dropped). ID is the last event ID as of the event, as
// EventSource reports it. Comments and retry lines are skipped.
func readSSE(r io.Reader, emit func(sseEvent)) {
	rd := sse.NewReaderSize(r, 64<<10, 1<<20)
	for {
		ev, err := rd.NextEvent()
		if err != nil {
			return
		}
		emit(sseEvent{ID: ev.ID, Event: ev.Type, Data: ev.Data})
	}
}

// Close ends the stream from the client side and waits for the reader.
func (s *sseStream) Close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// roomSignal reports whether an event is presence or typing, which tests
// of message delivery skip.
func roomSignal(event string) bool {
	switch event {
	case "presence", "join", "leave", "typing":
		return true
	}
	return false
}

// next returns the next event of the given type (others are skipped), or
// fails the test after timeout.
func (s *sseStream) next(t testing.TB, eventType string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				t.Fatalf("stream ended while waiting for a %q event", eventType)
			}
			if ev.Event == eventType {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event within %v", eventType, timeout)
		}
	}
}

// collectMessages reads chat messages until n arrived or timeout, returning
// their texts in arrival order.
func (s *sseStream) collectMessages(t testing.TB, n int, timeout time.Duration) []chat.Message {
	t.Helper()
	var got []chat.Message
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				return got
			}
			if ev.Event != "message" {
				continue
			}
			m, err := decodeEvent(ev)
			if err != nil {
				t.Fatalf("bad message event %+v: %v", ev, err)
			}
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
	return got
}

// buildBinary builds the server once per test binary run, for tests that
// need a real process to SIGTERM or SIGKILL.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "chatroom-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "chatroom")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// serverProcess is the chat server running as a child process.
type serverProcess struct {
	URL  string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan error
}

// startProcess starts the server binary on addr ("127.0.0.1:0" for any
// port) and waits until it is ready.
func startProcess(t testing.TB, redisURL, addr string, extra ...string) *serverProcess {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogBuffer()
	args := append([]string{"-addr", addr, "-redis", redisURL, "-rate-logins", "0",
		"-probe-interval", "200ms", "-probe-timeout", "1s", "-shutdown-timeout", "5s"}, testLimitFlags...)
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, logs: logs, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		p.done <- errors.New("already waited")
	})
	select {
	case p.URL = <-logs.url:
	case err := <-p.done:
		t.Fatalf("server process exited: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("server process did not start\n%s", logs)
	}
	waitReady(t, p.URL)
	return p
}

// signal sends sig and, for SIGTERM, waits for a clean exit.
func (p *serverProcess) terminate(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("server exited with %v\n%s", err, p.logs)
		}
	case <-time.After(timeout):
		t.Fatalf("server did not exit within %v of SIGINT\n%s", timeout, p.logs)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serverProcess) kill() {
	p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

// chatHistoryKey is the default room's history stream in Redis.
const chatHistoryKey = "chat:{chat}:history"

// decodeEvent decodes a message event's data and checks that the event's
// id (the stream's position) has the message's own ID for its room: the
// plain ID on a stream of the default room alone.
func decodeEvent(ev sseEvent) (chat.Message, error) {
	var m chat.Message
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		return m, fmt.Errorf("message event %s: %w", ev.ID, err)
	}
	pos, err := chat.ParsePositions(ev.ID)
	if err != nil {
		return m, fmt.Errorf("message event with id %q: %w", ev.ID, err)
	}
	if id, _ := chat.ParseID(m.ID); pos[m.Room] != id || !strings.Contains(","+ev.ID+",", ","+string(chat.AppendEntry(nil, m.Room, id))+",") {
		return m, fmt.Errorf("message event with id %q carries %s's id %q", ev.ID, m.Room, m.ID)
	}
	return m, nil
}

// decodeStored decodes a history entry of the default room as the broker does.
func decodeStored(t testing.TB, x redis.XMessage) (chat.Message, error) {
	t.Helper()
	id, err := chat.ParseID(x.ID)
	if err != nil {
		return chat.Message{}, err
	}
	body, _ := x.Values["m"].(string)
	seq, _ := strconv.ParseUint(fmt.Sprint(x.Values["s"]), 10, 64)
	return chat.DecodeStored(chat.DefaultRoom, id, seq, []byte(body))
}

// clip shortens s to n bytes for test messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
