package main

import (
	"chatroom/internal/chat"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// Fault tests of issue 3: Redis killed and restarted under load, and an
// instance stopped or killed while its clients are streaming. Every
// acknowledged message must reach every subscriber exactly once, in order.

// browserSubscriber is a raw SSE client that behaves like EventSource: on
// EOF or a network error it reconnects, sending Last-Event-ID with the ID of
// the last message it received. A failed connection attempt moves it to the
// next instance in bases (a load balancer's choice); attempts are bounded.
type browserSubscriber struct {
	name  string
	hc    *http.Client
	bases []string

	mu       sync.Mutex // guards the fields below
	msgs     []chat.Message
	statuses []string // the state of each "status" event, in order
	lastID   string
	connects int    // successful (200) connections
	failures int    // failed attempts (network error or non-200)
	served   string // base of the current connection
	err      error  // why it gave up
}

const maxSubscriberAttempts = 400

// newBrowserSubscriber logs name in at bases[0] and returns a subscriber
// whose session cookie is valid on every base (instances share the key).
func newBrowserSubscriber(t testing.TB, name string, bases ...string) *browserSubscriber {
	t.Helper()
	c := login(t, bases[0], name)
	for _, b := range bases[1:] {
		c.withBase(b)
	}
	return &browserSubscriber{name: name, hc: c.hc, bases: bases}
}

// run streams until ctx ends or it gives up.
func (b *browserSubscriber) run(ctx context.Context, startAfter string) {
	b.mu.Lock()
	b.lastID = startAfter
	b.mu.Unlock()
	hc := *b.hc
	hc.Timeout = 0
	base := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt >= maxSubscriberAttempts {
			b.mu.Lock()
			b.err = fmt.Errorf("gave up after %d connection attempts", attempt)
			b.mu.Unlock()
			return
		}
		err := b.stream(ctx, &hc, b.bases[base])
		if ctx.Err() != nil {
			return
		}
		if err != nil { // not served: try the next instance after a pause
			b.mu.Lock()
			b.failures++
			b.mu.Unlock()
			base = (base + 1) % len(b.bases)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond): // EventSource's retry, shortened
			}
		}
	}
}

var errNotServed = errors.New("stream not served")

// stream runs one connection. It returns errNotServed (wrapped) when the
// connection failed or was refused, nil when a served stream ended.
func (b *browserSubscriber) stream(ctx context.Context, hc *http.Client, base string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stream", nil)
	b.mu.Lock()
	if b.lastID != "" {
		req.Header.Set("Last-Event-ID", b.lastID)
	}
	b.mu.Unlock()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotServed, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: status %d", errNotServed, resp.StatusCode)
	}
	b.mu.Lock()
	b.connects++
	b.served = base
	b.mu.Unlock()
	readSSE(resp.Body, b.dispatch)
	return nil
}

func (b *browserSubscriber) dispatch(ev sseEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev.Event {
	case "message":
		m, err := decodeEvent(ev)
		if err != nil {
			b.err = err
			return
		}
		b.msgs = append(b.msgs, m)
		b.lastID = ev.ID
	case "status":
		switch {
		case strings.Contains(ev.Data, `"degraded"`):
			b.statuses = append(b.statuses, "degraded")
		case strings.Contains(ev.Data, `"ok"`):
			b.statuses = append(b.statuses, "ok")
		}
	}
}

// received returns a copy of the messages received so far.
func (b *browserSubscriber) received() []chat.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chat.Message(nil), b.msgs...)
}

// has reports whether the last received message has the given text.
func (b *browserSubscriber) has(text string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.msgs) - 1; i >= 0; i-- {
		if b.msgs[i].Text == text {
			return true
		}
	}
	return false
}

// sequentialPoster posts numbered messages one after another, as fast as
// the answers come, and records what each POST got.
type sequentialPoster struct {
	c      *chatClient
	prefix string
	bases  func(i int) string // which instance message i is posted to

	mu       sync.Mutex // guards the fields below
	acked    []string   // texts answered 204, in posting order
	unknown  map[string]bool
	failedAt map[string]string // text of a post not answered 204 -> the base it went to
	statuses map[string]int    // answers other than 204: "503", "transport error", …
	count    int
	slowest  time.Duration // longest wait for an answer
}

func newSequentialPoster(c *chatClient, prefix string, bases func(int) string) *sequentialPoster {
	return &sequentialPoster{c: c, prefix: prefix, bases: bases, unknown: map[string]bool{}, failedAt: map[string]string{}, statuses: map[string]int{}}
}

// run posts until ctx ends or max messages were tried.
func (p *sequentialPoster) run(ctx context.Context, limit int) {
	hc := *p.c.hc
	hc.Timeout = 10 * time.Second
	for i := 0; i < limit && ctx.Err() == nil; i++ {
		text := fmt.Sprintf("%s-%05d", p.prefix, i)
		form := url.Values{"message": {text}}.Encode()
		base := p.bases(i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/post", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		start := time.Now()
		resp, err := hc.Do(req)
		status := "transport error"
		if err == nil {
			resp.Body.Close()
			status = fmt.Sprint(resp.StatusCode)
		}
		p.mu.Lock()
		p.count++
		p.slowest = max(p.slowest, time.Since(start))
		if ctx.Err() != nil && status != "204" {
			// Stopped by the test while in flight: unknown, not an answer.
			p.unknown[text] = true
			p.mu.Unlock()
			return
		}
		if status == "204" {
			p.acked = append(p.acked, text)
		} else {
			p.unknown[text] = true // it may have been stored before the failure
			p.failedAt[text] = base
			p.statuses[status]++
		}
		p.mu.Unlock()
		if status != "204" {
			select { // a user would not retry instantly either
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

func (p *sequentialPoster) snapshot() (acked []string, unknown map[string]bool, statuses map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	unknown = make(map[string]bool, len(p.unknown))
	for k := range p.unknown {
		unknown[k] = true
	}
	statuses = make(map[string]int, len(p.statuses))
	for k, v := range p.statuses {
		statuses[k] = v
	}
	return append([]string(nil), p.acked...), unknown, statuses
}

func (p *sequentialPoster) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *sequentialPoster) status(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statuses[s]
}

// readyzStatus returns the status code of base's /readyz (0 when unreachable).
func readyzStatus(base string) int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// finishDelivery stops the poster, waits until every subscriber received the
// last acknowledged message, stops the subscribers and checks delivery.
func finishDelivery(t *testing.T, stopPoster, stopSubs func(), poster *sequentialPoster, subs []*browserSubscriber) {
	t.Helper()
	stopPoster()
	acked, unknown, statuses := poster.snapshot()
	poster.mu.Lock()
	slowest := poster.slowest
	poster.mu.Unlock()
	t.Logf("posts: %d acknowledged, %d not (%v); slowest answer %v", len(acked), len(unknown), statuses, slowest.Round(time.Millisecond))
	if len(acked) == 0 {
		t.Fatal("no post was acknowledged")
	}
	last := acked[len(acked)-1]
	for _, s := range subs {
		waitFor(t, 20*time.Second, s.name+" to receive "+last, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.err != nil || len(s.msgs) > 0 && s.msgs[len(s.msgs)-1].Text >= last
		})
	}
	stopSubs()
	for _, s := range subs {
		s.mu.Lock()
		t.Logf("%s: %d connections, %d failed attempts, statuses %v", s.name, s.connects, s.failures, s.statuses)
		if s.err != nil {
			t.Errorf("%s: %v", s.name, s.err)
		}
		s.mu.Unlock()
		checkDelivery(t, s.name, s.received(), acked, unknown)
	}
}

// startSubscribers runs subs until the returned stop is called.
func startSubscribers(subs []*browserSubscriber, startAfter string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx, startAfter) }()
	}
	return func() { cancel(); wg.Wait() }
}

// startPoster runs p until the returned stop is called (or max posts).
func startPoster(p *sequentialPoster, max int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, max) }()
	return func() { cancel(); <-done }
}

// TestRedisKilledUnderLoad: redis-server (appendfsync always) is SIGKILLed
// while a poster posts as fast as it is answered, then restarted on the same
// port. Every acknowledged post reaches every subscriber exactly once and in
// order (in both stream modes); posts during the outage get 503 and nothing
// else; /readyz is 503 during the outage and 200 after; open streams are
// told "degraded" and then "ok".
func TestRedisKilledUnderLoad(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	var servers []*testServer
	for _, mode := range streamModes {
		servers = append(servers, startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode))
	}
	var subs []*browserSubscriber
	for i, srv := range servers {
		for j := range 2 {
			subs = append(subs, newBrowserSubscriber(t, fmt.Sprintf("%s-%d", streamModes[i], j), srv.URL))
		}
	}
	stopSubs := startSubscribers(subs, "")
	defer stopSubs()
	for _, srv := range servers {
		waitFor(t, 10*time.Second, "streams open", func() bool { return serverCounters(t, srv).Streams == 2 })
	}

	poster := newSequentialPoster(login(t, servers[0].URL, "poster"), "seq", func(i int) string { return servers[i%2].URL })
	stopPoster := startPoster(poster, 20000)
	defer stopPoster()
	waitFor(t, 20*time.Second, "posts before the kill", func() bool { return poster.ackedCount() >= 50 })

	rs.Kill()
	t.Log("redis killed")
	for _, srv := range servers {
		waitFor(t, 10*time.Second, "/readyz 503 while redis is down", func() bool { return readyzStatus(srv.URL) == http.StatusServiceUnavailable })
	}
	waitFor(t, 10*time.Second, "a 503 answer to a post", func() bool { return poster.status("503") > 0 })
	for _, s := range subs {
		waitFor(t, 10*time.Second, s.name+` to be told "degraded"`, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.statuses) > 0 && s.statuses[len(s.statuses)-1] == "degraded"
		})
	}
	ackedInOutage := poster.ackedCount()

	rs.Restart()
	t.Log("redis restarted")
	for _, srv := range servers {
		waitFor(t, 20*time.Second, "/readyz 200 after the restart", func() bool { return readyzStatus(srv.URL) == http.StatusOK })
	}
	waitFor(t, 20*time.Second, "posts after the restart", func() bool { return poster.ackedCount() >= ackedInOutage+50 })
	for _, s := range subs {
		waitFor(t, 10*time.Second, s.name+` to be told "ok"`, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.statuses) > 0 && s.statuses[len(s.statuses)-1] == "ok"
		})
	}

	finishDelivery(t, stopPoster, stopSubs, poster, subs)
	_, _, statuses := poster.snapshot()
	for status, n := range statuses {
		if status != "503" {
			t.Errorf("%d posts got %s; only 204 or (during the outage) 503 are acceptable", n, status)
		}
	}
	// The streams themselves survive the outage: the hub does not depend
	// on Redis, so nobody had to reconnect.
	for _, s := range subs {
		if s.connects != 1 || s.failures != 0 {
			t.Errorf("%s: %d connections and %d failed attempts; the stream should have stayed open through the Redis outage", s.name, s.connects, s.failures)
		}
	}
}

// TestInstanceStoppedUnderLoad: two instances share one Redis; subscribers
// are spread over both. One instance is stopped with SIGTERM (and, in the
// other subtest, killed with SIGKILL) while messages are posted; its clients
// reconnect to the other instance with Last-Event-ID and miss nothing. A
// SIGTERMed instance exits cleanly within 10 s.
func TestInstanceStoppedUnderLoad(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			rs := redistest.Start(t)
			a := startProcess(t, rs.URL(), "127.0.0.1:0", "-rate-posts", "0", "-stream-mode", "pooled")
			b := startProcess(t, rs.URL(), "127.0.0.1:0", "-rate-posts", "0", "-stream-mode", "goroutine")
			var subs []*browserSubscriber
			for i := range 2 {
				subs = append(subs, newBrowserSubscriber(t, fmt.Sprintf("on-a-%d", i), a.URL, b.URL))
				subs = append(subs, newBrowserSubscriber(t, fmt.Sprintf("on-b-%d", i), b.URL, a.URL))
			}
			// Subscribers start from the beginning of history, like a page
			// rendered before any message.
			stopSubs := startSubscribers(subs, "0-1")
			defer stopSubs()
			for _, p := range []*serverProcess{a, b} {
				waitFor(t, 10*time.Second, "streams open", func() bool { return serverCounters(t, p).Streams == 2 })
			}

			// Posts alternate between the instances while A is up, then
			// go to B only.
			var aDown sync.Once
			aGone := make(chan struct{})
			poster := newSequentialPoster(login(t, b.URL, "poster"), "seq", func(i int) string {
				select {
				case <-aGone:
					return b.URL
				default:
				}
				if i%2 == 0 {
					return a.URL
				}
				return b.URL
			})
			poster.c.withBase(a.URL)
			stopPoster := startPoster(poster, 20000)
			defer stopPoster()
			waitFor(t, 20*time.Second, "posts before the stop", func() bool { return poster.ackedCount() >= 50 })

			start := time.Now()
			a.cmd.Process.Signal(sig)
			select {
			case err := <-a.done:
				a.done <- err
				elapsed := time.Since(start)
				t.Logf("instance A exited %v after %v: %v", sig, elapsed.Round(time.Millisecond), err)
				if sig == syscall.SIGTERM && err != nil {
					t.Errorf("after SIGTERM instance A exited with %v\n%s", err, a.logs)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("instance A did not exit within 10 s of %v\n%s", sig, a.logs)
			}
			aDown.Do(func() { close(aGone) })
			for _, s := range subs {
				waitFor(t, 10*time.Second, s.name+" served by B", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					return s.served == b.URL
				})
			}
			acked := poster.ackedCount()
			waitFor(t, 20*time.Second, "posts after the stop", func() bool { return poster.ackedCount() >= acked+50 })

			finishDelivery(t, stopPoster, stopSubs, poster, subs)
			_, _, statuses := poster.snapshot()
			for status, n := range statuses {
				if status != "503" && status != "transport error" {
					t.Errorf("%d posts got %s", n, status)
				}
			}
			poster.mu.Lock()
			for text, base := range poster.failedAt {
				if base != a.URL {
					t.Errorf("post %q to instance B failed", text)
				}
			}
			poster.mu.Unlock()
		})
	}
}
