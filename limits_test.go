package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// forwardedFor is a transport that presents every request as coming
// through a reverse proxy on loopback for the client at addr.
type forwardedFor struct {
	addr string
	next http.RoundTripper
}

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return f.next.RoundTrip(r)
}

// clientFrom is newClient for a client at addr behind the trusted proxy.
func clientFrom(t testing.TB, base, addr string) *chatClient {
	c := newClient(t, base)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = 0
	c.hc.Transport = forwardedFor{addr, tr}
	return c
}

// loginFrom logs in as name from addr (behind the trusted proxy).
func loginFrom(t testing.TB, base, name, addr string) *chatClient {
	t.Helper()
	c := clientFrom(t, base, addr)
	if resp := c.postForm("/login", url.Values{"user": {name}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %q from %s: %d %s", name, addr, resp.StatusCode, resp.body)
	}
	return c
}

// streamStatus opens /stream and returns its status and body (the body only
// when it is refused); an accepted stream is closed at cleanup.
func streamStatus(t testing.TB, c *chatClient) (int, string, *sseStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/stream", nil)
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return resp.StatusCode, string(b), nil
	}
	s := &sseStream{Events: make(chan sseEvent, 1000), resp: resp, cancel: cancel, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return resp.StatusCode, "", s
}

// TestStreamsPerAddress: one client address (seen through the trusted
// proxy's X-Forwarded-For) cannot hold more than -streams-per-addr streams,
// whatever the number of its logins, with a 429 that says why; a newcomer
// from another address still gets a stream, and a closed stream frees its
// place.
func TestStreamsPerAddress(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-trusted-proxies", "127.0.0.1", "-streams-per-addr", "3",
		"-streams-per-session", "0", "-max-streams", "10", "-heartbeat", "100ms")
	var held []*sseStream
	for i := range 6 {
		c := loginFrom(t, srv.URL, fmt.Sprintf("hog%d", i), "203.0.113.7")
		status, body, s := streamStatus(t, c)
		switch {
		case i < 3 && status != 200:
			t.Fatalf("stream %d of the address: %d %q, want 200", i+1, status, body)
		case i >= 3 && (status != 429 || !strings.Contains(body, "too many open chat streams from your address")):
			t.Fatalf("stream %d of the address: %d %q, want 429 with the reason", i+1, status, body)
		}
		if s != nil {
			held = append(held, s)
		}
	}
	// A newcomer from another address is not refused (the instance has room).
	newcomer := loginFrom(t, srv.URL, "newcomer", "198.51.100.9")
	if status, body, _ := streamStatus(t, newcomer); status != 200 {
		t.Fatalf("newcomer from another address: %d %q, want a stream", status, body)
	}
	// Without the trusted proxy's header the peer (loopback) is another address.
	direct := login(t, srv.URL, "direct")
	if status, body, _ := streamStatus(t, direct); status != 200 {
		t.Fatalf("direct client: %d %q, want a stream", status, body)
	}
	held[0].Close()
	again := loginFrom(t, srv.URL, "again", "203.0.113.7")
	waitFor(t, 10*time.Second, "the closed stream's place to be free", func() bool {
		status, _, s := streamStatus(t, again)
		if s != nil {
			s.Close()
		}
		return status == 200
	})
}

// TestStreamsPerSessionAcrossInstances: -streams-per-session counts a
// login's streams on every instance sharing the Redis, not per instance.
func TestStreamsPerSessionAcrossInstances(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a := startServer(t, rs.URL(), "-streams-per-session", "2", "-heartbeat", "100ms")
	b := startServer(t, rs.URL(), "-streams-per-session", "2", "-heartbeat", "100ms")
	alice := login(t, a.URL, "alice")
	aliceOnB := crossInstance(t, alice, a.URL, b.URL)
	onA := alice.openStream("", "")
	aliceOnB.openStream("", "")
	for _, c := range []*chatClient{aliceOnB, alice} {
		if status, body, _ := streamStatus(t, c); status != 429 || !strings.Contains(body, "too many open chat windows") {
			t.Fatalf("3rd stream of one login, on %s: %d %q, want 429", c.base, status, body)
		}
	}
	// Another login of the same name is another session.
	if status, body, _ := streamStatus(t, login(t, b.URL, "alice")); status != 200 {
		t.Fatalf("another login: %d %q", status, body)
	}
	onA.Close()
	waitFor(t, 10*time.Second, "the place freed on A to be usable on B", func() bool {
		status, _, s := streamStatus(t, aliceOnB)
		if s != nil {
			s.Close()
		}
		return status == 200
	})
}

// TestStreamSlotsExpire: a place whose instance stopped refreshing it (it
// died) expires after its TTL, even while another instance keeps its own
// place in the same set fresh, and that refreshed place stays taken.
func TestStreamSlotsExpire(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ttl := 600 * time.Millisecond
	slots := func(limit int) *streamSlots {
		s := newStreamSlots(rs.Client(), limit, 0, slog.New(slog.DiscardHandler))
		s.ttl = ttl
		return s
	}
	dead, live, other, checker := slots(2), slots(2), slots(2), slots(1)
	ctx := t.Context()
	if _, err := dead.acquire(ctx, "s1", "a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := live.acquire(ctx, "s1", "a", 0); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); live.run(runCtx) }()
	defer func() { stop(); <-done }()
	if _, err := other.acquire(ctx, "s1", "a", 0); err == nil {
		t.Fatal("a third stream of s1 was admitted at once")
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "the dead instance's place to expire", func() bool {
		rel, err := other.acquire(ctx, "s1", "a", 0)
		if err == nil {
			rel()
		}
		return err == nil
	})
	if waited := time.Since(start); waited < ttl/2 {
		t.Fatalf("place expired after %v, TTL %v", waited, ttl)
	}
	// The live instance's place, refreshed, outlasts several TTLs.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if rel, err := checker.acquire(ctx, "s1", "a", 0); err == nil {
			rel()
			t.Fatal("a refreshed place expired")
		}
	}
}

// TestConnsPerAddress: one peer address cannot hold more than
// -conns-per-addr connections, idle ones included; the one past the cap
// reads a 429 with the reason; a closed connection frees its place; a
// trusted proxy is exempt.
func TestConnsPerAddress(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-conns-per-addr", "4")
	host := strings.TrimPrefix(srv.URL, "http://")
	var conns []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// waitFor's probes (and the readiness check) have closed; an idle
	// connection is counted as soon as it is accepted.
	status := func(c net.Conn) (int, string) {
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return resp.StatusCode, string(b)
	}
	waitFor(t, 10*time.Second, "the start-up probes' connections to close", func() bool {
		c := dial()
		code, _ := status(c)
		c.Close()
		return code == 200
	})
	for range 4 {
		conns = append(conns, dial()) // idle
	}
	// The 5th is refused; counting happens at accept, so poll until the
	// 4 idle ones are all accepted (and the probe above is gone).
	waitFor(t, 10*time.Second, "the 5th connection refused", func() bool {
		c := dial()
		defer c.Close()
		code, body := status(c)
		if code == 429 && !strings.Contains(body, "too many open connections from your address") {
			t.Fatalf("refusal: %q", body)
		}
		return code == 429
	})
	conns[0].Close()
	waitFor(t, 10*time.Second, "a closed connection's place to be free", func() bool {
		c := dial()
		defer c.Close()
		code, _ := status(c)
		return code == 200
	})

	// Behind a trusted proxy every client arrives from the proxy's address:
	// it is not capped.
	proxied := startServer(t, rs.URL(), "-conns-per-addr", "2", "-trusted-proxies", "127.0.0.1")
	host = strings.TrimPrefix(proxied.URL, "http://")
	for i := range 6 {
		c := dial()
		if code, body := status(c); code != 200 {
			t.Fatalf("connection %d from the trusted proxy: %d %q", i+1, code, body)
		}
	}
}

// setFirstSeen makes name an established one (it first posted long ago).
func setFirstSeen(t testing.TB, rs *redistest.Server, uid string, ago time.Duration) {
	t.Helper()
	if err := rs.Client().Set(t.Context(), firstSeenKey(uid), time.Now().Add(-ago).UnixMilli(), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// postStatus posts text to the default room and returns the status, the
// body and the Retry-After header.
func postStatus(c *chatClient, text string) (int, string, string) {
	c.t.Helper()
	resp := c.postForm("/post", url.Values{"message": {text}})
	return resp.StatusCode, resp.body, resp.Header.Get("Retry-After")
}

// TestPostLimits: each flood limit refuses with a 429 that says which limit
// and carries Retry-After: the per-address rate (many names, one address),
// the new-name rate, the room rate, and slow mode (the flag's default and a
// room's own value in Redis, read within seconds of a change).
func TestPostLimits(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	want429 := func(t *testing.T, status int, body, retry, sentence string) {
		t.Helper()
		if status != 429 || !strings.Contains(body, sentence) || retry == "" || retry == "0" {
			t.Fatalf("got %d %q Retry-After %q, want 429 with %q", status, body, retry, sentence)
		}
	}
	t.Run("address", func(t *testing.T) {
		srv := startServer(t, rs.URL(), "-trusted-proxies", "127.0.0.1", "-rate-posts-addr", "2", "-new-name-posts", "0")
		accepted := 0
		for i := range 12 {
			c := loginFrom(t, srv.URL, fmt.Sprintf("addr%d", i), "203.0.113.20")
			status, body, retry := postStatus(c, "hi")
			if status == 204 {
				accepted++
				continue
			}
			want429(t, status, body, retry, "too many messages from your address")
		}
		if accepted < 4 || accepted > 6 { // burst 4, plus 2 a second while it ran
			t.Fatalf("%d of 12 posts from one address accepted, want the burst of 4 (+ a few)", accepted)
		}
		other := loginFrom(t, srv.URL, "elsewhere", "198.51.100.20")
		if status, body, _ := postStatus(other, "hi"); status != 204 {
			t.Fatalf("another address: %d %q", status, body)
		}
	})
	t.Run("new name", func(t *testing.T) {
		srv := startServer(t, rs.URL(), "-new-name-posts", "1", "-new-name-age", "10m", "-rate-posts", "0")
		fresh := login(t, srv.URL, "fresh")
		n := 0
		for ; n < 20; n++ {
			status, body, retry := postStatus(fresh, "hi")
			if status != 204 {
				want429(t, status, body, retry, "new names may send 1 messages a minute")
				break
			}
		}
		if n != newNameBurst {
			t.Fatalf("a new name posted %d at once, want the burst of %d", n, newNameBurst)
		}
		setFirstSeen(t, rs, "known", time.Hour)
		known := login(t, srv.URL, "known")
		for i := range 20 {
			if status, body, _ := postStatus(known, "hi"); status != 204 {
				t.Fatalf("established name, post %d: %d %q", i, status, body)
			}
		}
	})
	t.Run("room", func(t *testing.T) {
		srv := startServer(t, rs.URL(), "-rate-posts-room", "2", "-rate-posts", "0", "-new-name-posts", "0")
		users := []*chatClient{login(t, srv.URL, "r1"), login(t, srv.URL, "r2"), login(t, srv.URL, "r3")}
		if _, err := users[0].hc.Get(srv.URL + "/r/quiet"); err != nil { // another room, its own budget
			t.Fatal(err)
		}
		accepted := 0
		for i := range 12 {
			status, body, retry := postStatus(users[i%3], "hi")
			if status == 204 {
				accepted++
				continue
			}
			want429(t, status, body, retry, "this room is busy")
		}
		if accepted < 4 || accepted > 6 {
			t.Fatalf("%d of 12 posts in the room accepted, want the burst of 4 (+ a few)", accepted)
		}
		if resp := users[0].postForm("/r/quiet/post", url.Values{"message": {"elsewhere"}}); resp.StatusCode != 204 {
			t.Fatalf("another room: %d %q", resp.StatusCode, resp.body)
		}
	})
	t.Run("slow mode", func(t *testing.T) {
		srv := startServer(t, rs.URL(), "-slow-mode", "30s", "-rate-posts", "0")
		sam := login(t, srv.URL, "sam")
		if status, body, _ := postStatus(sam, "first"); status != 204 {
			t.Fatalf("first post: %d %q", status, body)
		}
		status, body, retry := postStatus(sam, "second")
		want429(t, status, body, retry, "slow mode: this room allows one message every 30s")
		if retry != "30" && retry != "29" {
			t.Fatalf("Retry-After %q, want about 30", retry)
		}
		if status, body, _ := postStatus(login(t, srv.URL, "tom"), "mine"); status != 204 {
			t.Fatalf("another user in slow mode: %d %q", status, body)
		}
		// The room's own setting wins over the flag: 0 is off.
		if err := rs.Client().Set(t.Context(), slowModeKey(chat.DefaultRoom), "0", 0).Err(); err != nil {
			t.Fatal(err)
		}
		rs.Client().Del(t.Context(), slowUserKey(chat.DefaultRoom, "sam"))
		waitFor(t, 10*time.Second, "slow mode off from redis", func() bool {
			a, _, _ := postStatus(sam, "x")
			b, _, _ := postStatus(sam, "y")
			return a == 204 && b == 204
		})
		// A malformed value is ignored: the flag's default applies.
		rs.Client().Set(t.Context(), slowModeKey(chat.DefaultRoom), "fast please", 0)
		waitFor(t, 10*time.Second, "slow mode back to the default", func() bool {
			status, _, _ := postStatus(sam, "z")
			return status == 429
		})
		if !strings.Contains(srv.logs.String(), "ignoring a malformed slow mode") {
			t.Fatal("the malformed slow mode was not logged")
		}
	})
}

// TestMessageShape: messages that would wall the page are refused with a
// 400 that says why: more lines than -max-lines, stacked combining marks,
// invisible tag characters.
func TestMessageShape(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-max-lines", "5", "-rate-posts", "0")
	c := login(t, srv.URL, "shape")
	for _, tc := range []struct {
		name, text string
		status     int
		contains   string
	}{
		{"5 lines", "1\n2\n3\n4\n5", 204, ""},
		{"6 lines", "1\n2\n3\n4\n5\n6", 400, "too many lines: 6, the limit is 5"},
		{"hundreds of empty lines", "a" + strings.Repeat("\n", 300) + "b", 400, "too many lines"},
		{"CRLF lines count once", "1\r\n2\r\n3\r\n4\r\n5", 204, ""},
		{"stacked marks", "Z" + strings.Repeat("\u0336\u0337", 20), 400, "combining marks"},
		{"tag characters", "hi\U000E0069\U000E0067\U000E006E", 400, "invisible tag character"},
		{"a region flag", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F", 204, ""},
	} {
		status, body, _ := postStatus(c, tc.text)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, status, body, tc.status, tc.contains)
		}
	}
}

// TestFloodManyNamesAndAddresses: fresh names from 17 addresses post as
// fast as they can (a bounded loop on loopback) while an established user
// keeps chatting. The flood is cut to the new names' share of the room
// rate (every refusal a 429 naming its limit), the history holds exactly
// what was accepted, and every message of the established user is accepted
// and delivered; its post→receive latency during the flood is logged.
func TestFloodManyNamesAndAddresses(t *testing.T) {
	t.Parallel()
	const (
		addresses    = 17
		namesPerAddr = 30
		roomRate     = 20 // -rate-posts-room: new names share 10 a second, burst 20
		floodFor     = 4 * time.Second
		maxAttempts  = 20000
	)
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-trusted-proxies", "127.0.0.1", "-rate-posts-room", fmt.Sprint(roomRate),
		"-rate-posts-addr", "10", "-new-name-posts", "20", "-new-name-age", "10m", "-rate-posts", "5", "-rate-burst", "10")

	var floods [addresses][]*chatClient
	var wg sync.WaitGroup
	for a := range addresses {
		wg.Go(func() {
			for n := range namesPerAddr {
				floods[a] = append(floods[a], loginFrom(t, srv.URL, fmt.Sprintf("f%d-%d", a, n), fmt.Sprintf("203.0.113.%d", a+1)))
			}
		})
	}
	wg.Wait()
	setFirstSeen(t, rs, "carol", time.Hour)
	carol := loginFrom(t, srv.URL, "carol", "192.0.2.50")
	watcher := loginFrom(t, srv.URL, "watcher", "192.0.2.51")
	stream := watcher.openStream("", "")
	stream.next(t, "presence", 10*time.Second)

	// Carol chats: one message every 250 ms, each timed from its POST to
	// its arrival on the watcher's stream (stamped by the reader).
	type arrival struct {
		text string
		at   time.Time
	}
	got := make(chan arrival, 10000)
	go func() {
		for ev := range stream.Events {
			var m chat.Message
			if ev.Event == "message" && json.Unmarshal([]byte(ev.Data), &m) == nil && m.UID == "carol" {
				got <- arrival{m.Text, time.Now()}
			}
		}
	}()
	carolChats := func(phase string, until func() bool) (lat []time.Duration, refusedN int) {
		sent := map[string]time.Time{}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; !until(); i++ {
			text := fmt.Sprintf("carol %s %d", phase, i)
			sent[text] = time.Now()
			if status, body, _ := postStatus(carol, text); status != 204 {
				refusedN++
				t.Errorf("carol's message %q: %d %q", text, status, body)
				delete(sent, text)
			}
			<-tick.C
		}
		deadline := time.After(10 * time.Second)
		for len(lat) < len(sent) {
			select {
			case a := <-got:
				if at, ok := sent[a.text]; ok {
					lat = append(lat, a.at.Sub(at))
				}
			case <-deadline:
				t.Fatalf("%s: only %d of carol's %d messages arrived", phase, len(lat), len(sent))
			}
		}
		slices.Sort(lat)
		return lat, refusedN
	}
	quietEnd := time.Now().Add(2 * time.Second)
	quiet, _ := carolChats("quiet", func() bool { return time.Now().After(quietEnd) })

	var attempts, accepted atomic.Int64
	var refusedMu sync.Mutex
	refused := map[string]int{}
	start := time.Now()
	for w := range 2 * addresses { // two posters per address
		a := w % addresses
		wg.Go(func() {
			for i := w / addresses; ; i += 2 {
				if attempts.Add(1) > maxAttempts || time.Since(start) > floodFor {
					return
				}
				c := floods[a][i%namesPerAddr]
				status, body, retry := postStatus(c, fmt.Sprintf("flood %d", i))
				switch {
				case status == 204:
					accepted.Add(1)
				case status == 429 && retry != "":
					reason, _, _ := strings.Cut(body, ";")
					refusedMu.Lock()
					refused[reason]++
					refusedMu.Unlock()
				default:
					t.Errorf("flood post: %d %q", status, body)
					return
				}
			}
		})
	}
	latencies, carolRefused := carolChats("flood", func() bool { return time.Since(start) > floodFor })
	wg.Wait()
	elapsed := time.Since(start)

	// Accepted flood messages: the new names' share of the room, 10 a
	// second with a burst of 20, over the flood's duration (+1 for a
	// token that was due as it ended).
	share := roomRate / 2
	bound := int64(2*share) + int64(float64(share)*elapsed.Seconds()) + 1
	if accepted.Load() > bound || accepted.Load() < int64(share) {
		t.Fatalf("flood: %d accepted in %v, want between %d and %d", accepted.Load(), elapsed, share, bound)
	}
	histLen, err := rs.Client().XLen(t.Context(), chatHistoryKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if histLen != accepted.Load()+int64(len(quiet)+len(latencies)) {
		t.Fatalf("history holds %d messages, accepted %d flood + %d carol", histLen, accepted.Load(), len(quiet)+len(latencies))
	}
	pct := func(l []time.Duration, p float64) time.Duration {
		return l[min(len(l)-1, int(p*float64(len(l))))].Round(time.Microsecond)
	}
	report := fmt.Sprintf("flood: %d names from %d addresses, %d attempts in %v: %d accepted (%.1f/s), refused %v; history %d; "+
		"carol before the flood: %d sent, post→receive p50 %v p90 %v max %v; during it: %d sent, %d refused, p50 %v p90 %v max %v",
		addresses*namesPerAddr, addresses, min(attempts.Load(), maxAttempts), elapsed.Round(time.Millisecond), accepted.Load(),
		float64(accepted.Load())/elapsed.Seconds(), refused, histLen,
		len(quiet), pct(quiet, .5), pct(quiet, .9), pct(quiet, 1),
		len(latencies), carolRefused, pct(latencies, .5), pct(latencies, .9), pct(latencies, 1))
	t.Log(report)
	if out := os.Getenv("FLOOD_REPORT"); out != "" {
		os.WriteFile(filepath.Clean(out), []byte(report+"\n"), 0o644)
	}
}

// TestReadyzMinimal: /readyz says only ok or degraded; the counters are
// only on the private -metrics-addr listener: GET /metrics on the public
// one is 404, to a direct request and through a proxy alike.
func TestReadyzMinimal(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL()) // with a metrics listener (testLimitFlags)
	get := func(path string, hdr ...string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/readyz"); status != 200 || body != "ok\n" {
		t.Fatalf("/readyz: %d %q, want exactly ok", status, body)
	}
	if status, body := get("/metrics"); status != 404 || strings.Contains(body, "chat_") {
		t.Fatalf("/metrics on the public listener: %d %q, want 404", status, body)
	}
	if status, body := get("/metrics", "X-Forwarded-For", "127.0.0.1"); status != 404 || strings.Contains(body, "chat_") {
		t.Fatalf("/metrics on the public listener through a proxy: %d %q, want 404", status, body)
	}
	if st := serverCounters(t, srv); !st.Ready {
		t.Fatalf("the metrics listener: %+v, want ready", st)
	}
	rs.Stop()
	waitFor(t, 10*time.Second, "/readyz degraded", func() bool {
		status, body := get("/readyz")
		return status == 503 && body == "degraded\n"
	})
	if st := serverCounters(t, srv); st.Ready {
		t.Fatalf("the metrics listener with Redis down: %+v, want not ready", st)
	}
}

// TestSessionKeyFile: -session-key-file creates a missing file with one
// secret and mode 0600, uses it (not Redis) to sign, and a file others may
// read is refused.
func TestSessionKeyFile(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "keys")
	srv := startServer(t, rs.URL(), "-session-key-file", path)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	if n, _ := rs.Client().Exists(t.Context(), sharedSecretKey).Result(); n != 0 {
		t.Fatal("the session secret was stored in redis although a key file is set")
	}
	b, _ := os.ReadFile(path)
	secret := strings.TrimSpace(string(b))
	c := newClient(t, srv.URL)
	u, _ := url.Parse(srv.URL)
	c.hc.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: signedCookie(t, secret, map[string]string{"name": "kim", "uid": "kim", "sid": "x1"})}})
	if got := c.get("/whoami"); got.StatusCode != 200 || !strings.Contains(got.body, `"kim"`) {
		t.Fatalf("cookie signed with the file's secret: %d %s", got.StatusCode, got.body)
	}
	os.Chmod(path, 0o644)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = run(ctx, []string{"chatroom", "-addr", "127.0.0.1:0", "-redis", rs.URL(), "-session-key-file", path}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "may be read by others") {
		t.Fatalf("group-readable key file: %v", err)
	}
}

// stallLogoutCheck fails the logout check (EXISTS chat:logged-out:…)
// while on is set, as a Redis that does not answer in time would.
type stallLogoutCheck struct{ on atomic.Bool }

func (h *stallLogoutCheck) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stallLogoutCheck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *stallLogoutCheck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if h.on.Load() && strings.EqualFold(cmd.Name(), "exists") && len(args) == 2 && strings.HasPrefix(fmt.Sprint(args[1]), "chat:logged-out:") {
			cmd.SetErr(context.DeadlineExceeded)
			return context.DeadlineExceeded
		}
		return next(ctx, cmd)
	}
}

// TestLogoutFailsOpenWhileRedisStalls: what the README states. A copy of a
// logged-out cookie is refused; while the logout check cannot reach Redis
// the cookie alone decides and the copy works; once Redis answers it is
// refused again.
func TestLogoutFailsOpenWhileRedisStalls(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	stall := &stallLogoutCheck{}
	srv := startServerWith(t, rs.URL(), options{redisHooks: []redis.Hook{stall}})
	alice := login(t, srv.URL, "alice")
	u, _ := url.Parse(srv.URL)
	cookieCopy := newClient(t, srv.URL)
	cookieCopy.hc.Jar.SetCookies(u, alice.hc.Jar.Cookies(u))
	if r := alice.postForm("/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if r := cookieCopy.get("/whoami"); r.StatusCode != 401 {
		t.Fatalf("copied cookie after logout: %d, want 401", r.StatusCode)
	}
	stall.on.Store(true)
	if r := cookieCopy.get("/whoami"); r.StatusCode != 200 {
		t.Fatalf("copied cookie while the logout check fails: %d, want 200 (fails open)", r.StatusCode)
	}
	stall.on.Store(false)
	if r := cookieCopy.get("/whoami"); r.StatusCode != 401 {
		t.Fatalf("copied cookie once redis answers: %d, want 401", r.StatusCode)
	}
}
