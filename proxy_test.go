package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// Issue 12: two instances on one Redis behind a real nginx running the
// shipped deploy/nginx configuration.

// proxyPair starts two in-process instances on rs with flags and nginx in
// front of them.
func proxyPair(t *testing.T, rs *redistest.Server, opts nginxOptions, flags ...string) (*testServer, *testServer, *testNginx) {
	t.Helper()
	a := startServer(t, rs.URL(), flags...)
	b := startServer(t, rs.URL(), flags...)
	return a, b, startNginx(t, []string{hostPort(a.URL), hostPort(b.URL)}, opts)
}

// TestProxyNoBuffering: through nginx every event reaches the client
// before the next message is even posted, so nothing is held back to fill
// a buffer. Heartbeats are a minute apart, so none flushes a buffer
// either. "config alone" tells nginx to ignore the stream's
// X-Accel-Buffering header: the shipped site must keep the stream
// unbuffered by itself.
func TestProxyNoBuffering(t *testing.T) {
	rs := redistest.Start(t)
	for _, tc := range []struct {
		name  string
		extra string
	}{
		{"shipped", ""},
		{"config alone", "    proxy_ignore_headers X-Accel-Buffering;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ng := proxyPair(t, rs, nginxOptions{httpExtra: tc.extra}, "-heartbeat", "1m", "-rate-posts", "0")
			alice := login(t, ng.URL, "alice")
			// A buffering proxy holds back even the response headers.
			alice.hc.Transport = &http.Transport{ResponseHeaderTimeout: 10 * time.Second}
			s := alice.openStream("", "")
			for i := range 10 {
				text := fmt.Sprintf("%s unbuffered %d", tc.name, i)
				alice.post(text)
				got := s.collectMessages(t, 1, 10*time.Second)
				if len(got) != 1 || got[0].Text != text {
					t.Fatalf("message %d %q not delivered through nginx before the next post (got %+v): buffered?\n%s", i, text, got, ng.errorLog())
				}
			}
		})
	}
}

// TestProxyResumeAfterInstanceKilled: a stream through nginx is on one
// instance; that instance is SIGKILLed; messages are posted (to the other)
// while the client is disconnected; the client reconnects through nginx
// with Last-Event-ID, lands on the surviving instance and gets every
// message exactly once, in order.
func TestProxyResumeAfterInstanceKilled(t *testing.T) {
	rs := redistest.Start(t)
	procs := []*serverProcess{startProcess(t, rs.URL(), "127.0.0.1:0", "-rate-posts", "0"), startProcess(t, rs.URL(), "127.0.0.1:0", "-rate-posts", "0")}
	ng := startNginx(t, []string{hostPort(procs[0].URL), hostPort(procs[1].URL)}, nginxOptions{})

	poster := login(t, procs[0].URL, "poster")
	poster.post("start")
	start := midID(t, rs, "start")
	sub := newProxySubscriber(login(t, ng.URL, "reader"), "reader")
	release := make(chan struct{})
	sub.holdReconnect(release)
	startProxySubscribers(t, []*proxySubscriber{sub}, start)

	var holder, other *serverProcess
	eventually(t, "stream open through nginx", 20*time.Second, func() (bool, string) {
		_, conns, open, _ := sub.state()
		if !open {
			return false, fmt.Sprintf("connections %+v", conns)
		}
		for i, p := range procs {
			if hostPort(p.URL) == conns[0].upstream {
				holder, other = p, procs[1-i]
				return true, ""
			}
		}
		t.Fatalf("stream served by %q, neither instance", conns[0].upstream)
		return false, ""
	})
	posterOnOther := poster.withBase(other.URL)
	want := numbered("before-kill", 5)
	postAll(posterOnOther, want)
	eventually(t, "messages before the kill received", 20*time.Second, func() (bool, string) {
		msgs, _, _, _ := sub.state()
		return len(msgs) == len(want), fmt.Sprintf("%d of %d", len(msgs), len(want))
	})

	holder.kill()
	eventually(t, "the killed instance's stream ended", 20*time.Second, func() (bool, string) {
		_, conns, open, _ := sub.state()
		return !open, fmt.Sprintf("connections %+v", conns)
	})
	during := numbered("while-disconnected", 10)
	postAll(posterOnOther, during)
	want = append(want, during...)
	close(release)

	eventually(t, "every message received after the reconnect", 30*time.Second, func() (bool, string) {
		msgs, conns, _, err := sub.state()
		if err != nil {
			t.Fatal(err)
		}
		return len(msgs) >= len(want), fmt.Sprintf("%d of %d, connections %+v", len(msgs), len(want), conns)
	})
	after := numbered("after-reconnect", 3)
	postAll(posterOnOther, after)
	want = append(want, after...)
	eventually(t, "messages after the reconnect received", 20*time.Second, func() (bool, string) {
		msgs, _, _, _ := sub.state()
		return len(msgs) >= len(want), fmt.Sprintf("%d of %d", len(msgs), len(want))
	})
	msgs, conns, _, _ := sub.state()
	if last := conns[len(conns)-1]; last.upstream != hostPort(other.URL) {
		t.Fatalf("resumed stream served by %q, want the surviving instance %s", last.upstream, hostPort(other.URL))
	}
	checkDelivery(t, "reader", msgs, want, nil)
}

// namedClient is a client of base (http://chat.test:<port>) that resolves
// chat.test to 127.0.0.1, as the browser tests' host-resolver-rules do.
func namedClient(t testing.TB, base string) *chatClient {
	c := newClient(t, base)
	var d net.Dialer
	c.hc.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "chat.test" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}}
	return c
}

// postWith posts a form with extra request headers and returns the status.
func (c *chatClient) postWith(path string, v url.Values, hdr map[string]string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, val := range hdr {
		req.Header.Set(k, val)
	}
	return c.do(req)
}

// TestProxyCrossOrigin: with -public-url http://chat.test:<port>, a
// browser that sends no Sec-Fetch-* headers logs in and posts when its
// Origin is the public URL: through nginx (which passes the name as Host)
// and also where the Host is not the public name (the instance reached by
// its own address, as behind a proxy that does not pass Host). A
// cross-site POST is refused with 403 everywhere, with or without
// Sec-Fetch-Site.
func TestProxyCrossOrigin(t *testing.T) {
	rs := redistest.Start(t)
	port := freePort(t)
	public := fmt.Sprintf("http://chat.test:%d", port)
	a := startServer(t, rs.URL(), "-public-url", public)
	b := startServer(t, rs.URL(), "-public-url", public)
	startNginxPort(t, []string{hostPort(a.URL), hostPort(b.URL)}, nginxOptions{}, port)

	same := map[string]string{"Origin": public}
	evil := map[string]string{"Origin": "http://evil.example"}
	evilFetch := map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
	viaProxy := namedClient(t, public)
	if r := viaProxy.postWith("/login", url.Values{"user": {"alice"}}, same); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login through nginx with Origin %s: %d %s", public, r.StatusCode, r.body)
	}
	if r := viaProxy.postWith("/post", url.Values{"message": {"same origin via nginx"}}, same); r.StatusCode != http.StatusNoContent {
		t.Fatalf("post through nginx with Origin %s: %d %s", public, r.StatusCode, r.body)
	}
	for name, hdr := range map[string]map[string]string{"Origin": evil, "Origin and Sec-Fetch-Site": evilFetch} {
		if r := viaProxy.postWith("/post", url.Values{"message": {"evil via nginx"}}, hdr); r.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site post through nginx (%s): %d %s, want 403", name, r.StatusCode, r.body)
		}
	}

	// Host is 127.0.0.1:<port>, not the public name: only the trusted
	// public URL lets the Origin pass.
	direct := newClient(t, a.URL)
	if r := direct.postWith("/login", url.Values{"user": {"bob"}}, same); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login at %s with Origin %s (the public URL): %d %s", a.URL, public, r.StatusCode, r.body)
	}
	if r := direct.postWith("/post", url.Values{"message": {"public origin, other host"}}, same); r.StatusCode != http.StatusNoContent {
		t.Fatalf("post at %s with Origin %s (the public URL): %d %s", a.URL, public, r.StatusCode, r.body)
	}
	for name, hdr := range map[string]map[string]string{"Origin": evil, "Origin and Sec-Fetch-Site": evilFetch} {
		if r := direct.postWith("/post", url.Values{"message": {"evil direct"}}, hdr); r.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site post at %s (%s): %d %s, want 403", a.URL, name, r.StatusCode, r.body)
		}
	}
	n, err := rs.Client().XLen(t.Context(), chatHistoryKey).Result()
	if err != nil || n != 2 {
		t.Fatalf("history holds %d messages (%v), want the 2 same-origin ones", n, err)
	}
}

// dialFrom is a client of base whose connections come from the loopback
// address local (127.0.0.2, …): a distinct client address on one machine.
func dialFrom(t testing.TB, base, local string) *chatClient {
	c := newClient(t, base)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c.hc.Transport = &http.Transport{DialContext: d.DialContext}
	return c
}

// TestProxyForwardedFor: instances trust 127.0.0.1 (nginx's address
// towards them) and allow 2 logins per client IP and minute. Clients come
// from distinct loopback addresses. Through nginx each client gets its own
// budget (the server uses the X-Forwarded-For address, not nginx's), and a
// forged X-Forwarded-For does not buy a fresh one, neither through nginx
// (nginx appends the real address) nor sent straight to an instance from
// an address that is not a trusted proxy.
func TestProxyForwardedFor(t *testing.T) {
	rs := redistest.Start(t)
	a, _, ng := proxyPair(t, rs, nginxOptions{}, "-trusted-proxies", "127.0.0.1", "-rate-logins", "2")
	loginStatus := func(c *chatClient, name string, hdr map[string]string) int {
		t.Helper()
		return c.postWith("/login", url.Values{"user": {name}}, hdr).StatusCode
	}
	first := dialFrom(t, ng.URL, "127.0.0.2")
	for i := range 2 {
		if st := loginStatus(first, fmt.Sprintf("first%d", i), nil); st != http.StatusSeeOther {
			t.Fatalf("login %d from 127.0.0.2 through nginx: %d", i, st)
		}
	}
	if st := loginStatus(first, "first2", nil); st != http.StatusTooManyRequests {
		t.Fatalf("third login from 127.0.0.2 through nginx: %d, want 429", st)
	}
	second := dialFrom(t, ng.URL, "127.0.0.3")
	if st := loginStatus(second, "second", nil); st != http.StatusSeeOther {
		t.Fatalf("login from 127.0.0.3 through nginx: %d, want 303 (its own budget: the server must use X-Forwarded-For, not nginx's address)", st)
	}
	forged := map[string]string{"X-Forwarded-For": "198.51.100.7"}
	if st := loginStatus(first, "forged-via-nginx", forged); st != http.StatusTooManyRequests {
		t.Fatalf("login from 127.0.0.2 through nginx with a forged X-Forwarded-For: %d, want 429", st)
	}
	direct := dialFrom(t, a.URL, "127.0.0.2")
	if st := loginStatus(direct, "forged-direct", forged); st != http.StatusTooManyRequests {
		t.Fatalf("login from untrusted 127.0.0.2 straight to the instance with a forged X-Forwarded-For: %d, want 429 (header believed)", st)
	}
	if st := loginStatus(dialFrom(t, a.URL, "127.0.0.4"), "fresh-direct", forged); st != http.StatusSeeOther {
		t.Fatalf("login from 127.0.0.4 straight to the instance: %d, want 303", st)
	}
}

// TestNginxReloadMovesStreams: 6 clients stream through nginx, with
// heartbeats every 300 ms keeping the streams busy. After nginx -s reload
// the old worker closes them within worker_shutdown_timeout (shortened to
// 2 s here): every client reconnects with Last-Event-ID through a new
// worker, the old worker exits, and no client misses a message posted
// before, during or after the reload.
func TestNginxReloadMovesStreams(t *testing.T) {
	rs := redistest.Start(t)
	const shutdown = 2 * time.Second
	a, b, ng := proxyPair(t, rs, nginxOptions{shutdownTimeout: "2s"}, "-heartbeat", "300ms", "-rate-posts", "0")
	oldWorkers := ng.workers(t)
	if len(oldWorkers) == 0 {
		t.Fatal("no nginx workers found")
	}
	poster := login(t, a.URL, "poster")
	onB := poster.withBase(b.URL)
	poster.post("start")
	start := midID(t, rs, "start")

	var subs []*proxySubscriber
	for i := range 6 {
		name := fmt.Sprintf("reader%d", i)
		subs = append(subs, newProxySubscriber(login(t, ng.URL, name), name))
	}
	startProxySubscribers(t, subs, start)
	eventually(t, "every stream open on the first worker", 20*time.Second, func() (bool, string) {
		for _, s := range subs {
			_, conns, open, _ := s.state()
			if !open || len(conns) != 1 {
				return false, fmt.Sprintf("%s: open %v, connections %+v", s.name, open, conns)
			}
		}
		return true, ""
	})
	var want []string
	post := func(prefix string, i int) {
		text := fmt.Sprintf("%s-%03d", prefix, i)
		[]*chatClient{poster, onB}[i%2].post(text)
		want = append(want, text)
	}
	for i := range 5 {
		post("before", i)
	}

	reloaded := time.Now()
	ng.reload(t)
	// Post while the streams move: until every client is on a new worker
	// and the old worker is gone (bounded in count and time).
	moved := func() (bool, string) {
		workers := ng.workers(t)
		for _, w := range oldWorkers {
			if slices.Contains(workers, w) {
				return false, fmt.Sprintf("old worker %d still running (workers %v)", w, workers)
			}
		}
		for _, s := range subs {
			_, conns, open, _ := s.state()
			last := conns[len(conns)-1]
			if !open || len(conns) < 2 || slices.Contains(oldWorkers, atoiOr(last.worker)) {
				return false, fmt.Sprintf("%s: open %v, connections %+v", s.name, open, conns)
			}
		}
		return true, ""
	}
	deadline := reloaded.Add(shutdown + 10*time.Second)
	var detail string
	for i := 0; ; i++ {
		ok, d := moved()
		if ok {
			break
		}
		detail = d
		if i >= 2000 || time.Now().After(deadline) {
			t.Fatalf("streams not moved to a new worker within %v of the reload: %s\n%s", time.Since(reloaded), detail, ng.errorLog())
		}
		post("during", i)
	}
	took := time.Since(reloaded)
	t.Logf("all %d streams on a new worker and the old worker gone %v after the reload (worker_shutdown_timeout %v); %d messages posted meanwhile", len(subs), took.Round(time.Millisecond), shutdown, len(want)-5)
	if took > shutdown+5*time.Second {
		t.Errorf("streams moved only after %v, worker_shutdown_timeout is %v", took, shutdown)
	}
	for i := range 5 {
		post("after", i)
	}
	eventually(t, "every client has every message", 30*time.Second, func() (bool, string) {
		if err := subscriberErr(subs); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if msgs, _, _, _ := s.state(); len(msgs) < len(want) {
				return false, fmt.Sprintf("%s: %d of %d", s.name, len(msgs), len(want))
			}
		}
		return true, ""
	})
	for _, s := range subs {
		msgs, _, _, _ := s.state()
		checkDelivery(t, s.name, msgs, want, nil)
	}
}

// atoiOr is s as a number, 0 if it is none.
func atoiOr(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestBrowserProxyPlainHTTPName: Chromium logs in and chats through nginx
// on a plain-HTTP, non-localhost name (http://chat.test:<port>), where it
// sends no Sec-Fetch-Site, so the cross-origin check compares Origin with
// the Host nginx passes. "shipped site" sets no -public-url: the shipped
// config alone makes it work; "public url" sets it as a deployer would.
func TestBrowserProxyPlainHTTPName(t *testing.T) {
	rs := redistest.Start(t)
	browser := startBrowserWith(t, chromedp.Flag("host-resolver-rules", "MAP chat.test 127.0.0.1"))
	for _, withPublic := range []bool{false, true} {
		name := map[bool]string{false: "shipped site", true: "public url"}[withPublic]
		t.Run(name, func(t *testing.T) {
			port := freePort(t)
			base := fmt.Sprintf("http://chat.test:%d", port)
			var flags []string
			if withPublic {
				flags = []string{"-public-url", base}
			}
			a := startServer(t, rs.URL(), flags...)
			b := startServer(t, rs.URL(), flags...)
			startNginxPort(t, []string{hostPort(a.URL), hostPort(b.URL)}, nginxOptions{}, port)
			alice := newBrowserTab(t, browser, "alice")
			bob := newBrowserTab(t, browser, "bob")
			for _, u := range []*browserTab{alice, bob} {
				u.loginThroughForm(base, u.name)
				u.waitFor("status shows connected", pageConnectedJS)
			}
			hello := "hello through nginx (" + name + ")"
			alice.typeAndSend(hello)
			bob.waitLastMessage("alice", hello)
			alice.waitLastMessage("alice", hello)
			reply := "reply through nginx (" + name + ")"
			bob.typeAndSend(reply)
			alice.waitLastMessage("bob", reply)
			if p := append(alice.consoleProblems(), bob.consoleProblems()...); len(p) > 0 {
				t.Fatalf("console problems: %q", p)
			}
		})
	}
}
