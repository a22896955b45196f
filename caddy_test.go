package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// A real Caddy (Debian's, installed by make deps) in front of two
// instances, run with the shipped deploy/Caddyfile.

const caddyPath = "/usr/bin/caddy"

var (
	caddyGlobal      = regexp.MustCompile(`(?m)^\{[ \t]*\n`)
	caddyGrace       = regexp.MustCompile(`(?m)^([ \t]*grace_period)[ \t]+\S+`)
	caddySiteAddress = regexp.MustCompile(`(?m)^chat\.example\.org \{`)
	caddyUpstreams   = regexp.MustCompile(`(?m)^(\s*reverse_proxy)((?:\s+127\.0\.0\.1:\d+)+)\s*\{`)
)

// caddyOptions are a test's changes to the shipped Caddyfile.
type caddyOptions struct {
	grace string // replaces grace_period's value, if set
	admin bool   // the admin endpoint on a free port (for caddy reload), else off
}

// testCaddy is a caddy process started by a test.
type testCaddy struct {
	URL   string
	conf  string // the Caddyfile it runs
	admin string // host:port of its admin endpoint, if on
	log   func() string
	cmd   *exec.Cmd
	// exited is closed once the process ended.
	exited <-chan struct{}
}

// caddyfile is the shipped deploy/Caddyfile with its site address replaced
// by http://127.0.0.1:port (plain HTTP: no certificate on loopback) and its
// upstreams by upstreams, and in its global options what keeps a test's
// Caddy to itself (admin off or on admin, no certificates). Every other
// directive is kept as shipped.
func caddyfile(t testing.TB, upstreams []string, port int, admin string, opts caddyOptions) string {
	t.Helper()
	b, err := os.ReadFile("deploy/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	site := string(b)
	if !caddyGlobal.MatchString(site) || !caddySiteAddress.MatchString(site) || !caddyUpstreams.MatchString(site) {
		t.Fatalf("deploy/Caddyfile: no global options block, no \"chat.example.org {\" site or no \"reverse_proxy 127.0.0.1:<port> … {\" to replace")
	}
	adminLine := "\tadmin off\n"
	if admin != "" {
		adminLine = "\tadmin " + admin + "\n"
	}
	site = caddyGlobal.ReplaceAllLiteralString(site, "{\n"+adminLine+"\tauto_https off\n")
	if opts.grace != "" {
		site = caddyGrace.ReplaceAllString(site, "${1} "+opts.grace)
	}
	site = caddySiteAddress.ReplaceAllString(site, "http://127.0.0.1:"+strconv.Itoa(port)+" {")
	return caddyUpstreams.ReplaceAllString(site, "${1} "+strings.Join(upstreams, " ")+" {")
}

// startCaddy runs caddy with the shipped Caddyfile in front of upstreams
// and waits until it proxies /healthz. It is stopped at cleanup.
func startCaddy(t testing.TB, upstreams []string, opts caddyOptions) *testCaddy {
	t.Helper()
	if _, err := os.Stat(caddyPath); err != nil {
		// make deps installs it where apt offers it (Debian 12 does).
		t.Skipf("caddy is not installed (%v): make deps installs Debian's package caddy where apt offers it", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	admin := ""
	if opts.admin {
		admin = "127.0.0.1:" + strconv.Itoa(freePort(t))
	}
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, []byte(caddyfile(t, upstreams, port, admin, opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyPath, "run", "--adapter", "caddyfile", "--config", conf)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once cmd.Wait returned, with waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// A stream whose client left holds Caddy's graceful stop until
		// its next heartbeat: no need to wait for it here.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	caddyLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("caddy exited: %v\n%s", waitErr, caddyLog())
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &testCaddy{URL: base, conf: conf, admin: admin, log: caddyLog, cmd: cmd, exited: exited}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy on %s not proxying /healthz within 20 s (last: %v)\n%s", base, err, caddyLog())
		}
		time.Sleep(20 * time.Millisecond) // polling another process
	}
}

// TestCaddyProxy: through the shipped Caddyfile in front of two instances
// (which trust 127.0.0.1, Caddy's address towards them, and allow 2
// logins per client address and minute):
//   - Caddy passes the browser's Host: a login and a post whose Origin is
//     Caddy's own address pass the cross-origin check with no Sec-Fetch-*
//     headers, and a cross-site post gets 403;
//   - every event reaches the client before the next message is posted
//     (heartbeats a minute apart flush nothing);
//   - X-Forwarded-For carries the real client address: each client
//     address has its own login budget, and a forged header buys none.
func TestCaddyProxy(t *testing.T) {
	rs := redistest.Start(t)
	flags := []string{"-heartbeat", "1m", "-rate-posts", "0", "-trusted-proxies", "127.0.0.1", "-rate-logins", "2"}
	a := startServer(t, rs.URL(), flags...)
	b := startServer(t, rs.URL(), flags...)
	base := startCaddy(t, []string{hostPort(a.URL), hostPort(b.URL)}, caddyOptions{}).URL

	same := map[string]string{"Origin": base}
	alice := dialFrom(t, base, "127.0.0.2")
	if r := alice.postWith("/login", url.Values{"user": {"alice"}}, same); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login through caddy with Origin %s: %d %s", base, r.StatusCode, r.body)
	}
	if r := alice.postWith("/post", url.Values{"message": {"evil"}}, map[string]string{"Origin": "http://evil.example"}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site post through caddy: %d %s, want 403", r.StatusCode, r.body)
	}
	// A buffering proxy holds back even the response headers.
	alice.hc.Transport.(*http.Transport).ResponseHeaderTimeout = 10 * time.Second
	s := alice.openStream("", "")
	for i := range 10 {
		text := fmt.Sprintf("unbuffered %d", i)
		if r := alice.postWith("/post", url.Values{"message": {text}}, same); r.StatusCode != http.StatusNoContent {
			t.Fatalf("post %d through caddy: %d %s", i, r.StatusCode, r.body)
		}
		if got := s.collectMessages(t, 1, 10*time.Second); len(got) != 1 || got[0].Text != text {
			t.Fatalf("message %d %q not delivered through caddy before the next post (got %+v): buffered?", i, text, got)
		}
	}

	loginStatus := func(c *chatClient, name string, hdr map[string]string) int {
		t.Helper()
		return c.postWith("/login", url.Values{"user": {name}}, hdr).StatusCode
	}
	if st := loginStatus(alice, "alice2", nil); st != http.StatusSeeOther {
		t.Fatalf("second login from 127.0.0.2 through caddy: %d", st)
	}
	if st := loginStatus(alice, "alice3", nil); st != http.StatusTooManyRequests {
		t.Fatalf("third login from 127.0.0.2 through caddy: %d, want 429", st)
	}
	if st := loginStatus(alice, "forged", map[string]string{"X-Forwarded-For": "198.51.100.7"}); st != http.StatusTooManyRequests {
		t.Fatalf("login from 127.0.0.2 through caddy with a forged X-Forwarded-For: %d, want 429", st)
	}
	if st := loginStatus(dialFrom(t, base, "127.0.0.3"), "bob", nil); st != http.StatusSeeOther {
		t.Fatalf("login from 127.0.0.3 through caddy: %d, want 303 (its own budget: the server must see X-Forwarded-For, not caddy's address)", st)
	}
}

// TestCaddyReloadMovesStreams: 4 clients stream through Caddy, with
// heartbeats every 300 ms keeping the streams busy. caddy reload closes
// them at once (Caddy ends proxied streams when their configuration is
// unloaded; grace_period plays no part): every client reconnects with
// Last-Event-ID and gets every message posted before, during and after
// the reload, exactly once, in order.
func TestCaddyReloadMovesStreams(t *testing.T) {
	rs := redistest.Start(t)
	flags := []string{"-heartbeat", "300ms", "-rate-posts", "0"}
	a := startServer(t, rs.URL(), flags...)
	b := startServer(t, rs.URL(), flags...)
	cd := startCaddy(t, []string{hostPort(a.URL), hostPort(b.URL)}, caddyOptions{grace: "2s", admin: true})
	poster := login(t, a.URL, "poster")

	const n = 4
	clients := make([]*chatClient, n)
	streams := make([]*sseStream, n)
	texts := make([][]string, n)
	lastID := make([]string, n)
	take := func(i int, ev sseEvent) {
		if ev.Event != "message" {
			return
		}
		m, err := decodeEvent(ev)
		if err != nil {
			t.Fatalf("client %d: bad message %+v: %v", i, ev, err)
		}
		texts[i] = append(texts[i], m.Text)
		lastID[i] = ev.ID
	}
	for i := range n {
		clients[i] = login(t, cd.URL, fmt.Sprintf("reader%d", i))
		streams[i] = clients[i].openStream("", "")
	}
	poster.post("before")
	for i, s := range streams {
		take(i, s.next(t, "message", 10*time.Second))
	}

	reloadAt := time.Now()
	if out, err := exec.Command(caddyPath, "reload", "--force", "--config", cd.conf, "--adapter", "caddyfile", "--address", cd.admin).CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s\n%s", err, out, cd.log())
	}
	poster.post("during")
	// Well before the grace period (2 s): Caddy ends the streams itself,
	// it does not wait for them.
	deadline := time.After(1500 * time.Millisecond)
	for i, s := range streams {
	read:
		for {
			select {
			case ev, ok := <-s.Events:
				if !ok {
					break read
				}
				take(i, ev)
			case <-deadline:
				t.Fatalf("stream %d still open %v after caddy reload: it stays on the old configuration", i, time.Since(reloadAt).Round(time.Millisecond))
			}
		}
	}
	t.Logf("every stream closed %v after the reload", time.Since(reloadAt).Round(time.Millisecond))

	for i, c := range clients {
		streams[i] = c.openStream(lastID[i], "")
	}
	poster.post("after")
	want := []string{"before", "during", "after"}
	for i, s := range streams {
		for len(texts[i]) < len(want) {
			before := len(texts[i])
			for _, m := range s.collectMessages(t, len(want)-len(texts[i]), 10*time.Second) {
				texts[i] = append(texts[i], m.Text)
			}
			if len(texts[i]) == before {
				break
			}
		}
		if !slices.Equal(texts[i], want) {
			t.Errorf("client %d received %q, want %q exactly once each, in order", i, texts[i], want)
		}
	}
}

// TestCaddyStopIsBounded: Caddy stopping (SIGTERM, as systemctl stop and
// restart send) lets open requests finish for the shipped grace_period
// (shortened to 2 s here), then closes them: streams, which never finish
// by themselves, do not hold it up for longer. Without grace_period it
// waits for them forever.
func TestCaddyStopIsBounded(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL(), "-heartbeat", "300ms")
	cd := startCaddy(t, []string{hostPort(a.URL)}, caddyOptions{grace: "2s"})
	var streams []*sseStream
	for i := range 3 {
		streams = append(streams, login(t, cd.URL, fmt.Sprintf("reader%d", i)).openStream("", ""))
	}
	stopAt := time.Now()
	cd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cd.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("caddy still running 5 s after SIGTERM with 3 streams open (grace_period 2s)\n%s", cd.log())
	}
	took := time.Since(stopAt)
	t.Logf("caddy stopped %v after SIGTERM", took.Round(time.Millisecond))
	for i, s := range streams {
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Errorf("stream %d still open after caddy stopped", i)
		}
	}
}
