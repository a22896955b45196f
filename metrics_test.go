package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// The Prometheus metrics (issue 12) on the private -metrics-addr listener:
// after a scripted session, the counters say what happened.

var metricsLine = regexp.MustCompile(`msg="metrics listening" url=(\S+)`)

// scrape reads the metrics page into name{labels} → value.
func scrape(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics runs a scripted session (logins with a wrong password, a
// limited typing signal, posts, a resume, a slow consumer evicted, a Redis
// restart) and checks that the counters read from /metrics say what
// happened.
func TestMetrics(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-metrics-addr", "127.0.0.1:0", "-heartbeat", "200ms", "-rate-posts", "0",
		"-rate-typing", "1", "-stream-buffer", "16", "-max-message", "40000", "-write-timeout", "10s")
	metricsURL := metricsURL(t, srv.logs)
	check := func(what string, want map[string]float64) {
		t.Helper()
		got := scrape(t, metricsURL)
		for name, v := range want {
			if g, ok := got[name]; !ok || g != v {
				t.Errorf("%s: %s = %v (present %v), want %v", what, name, g, ok, v)
			}
		}
	}

	// Two logins (one reserving its name), one wrong password.
	alice := newClient(t, srv.URL)
	if r := alice.postForm("/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.StatusCode, r.body)
	}
	bob := login(t, srv.URL, "bob")
	if r := newClient(t, srv.URL).postForm("/login", url.Values{"user": {"alice"}, "password": {"wrong password here"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s", r.StatusCode, r.body)
	}
	// Typing signals: a burst of two, then the limit.
	for i, want := range []int{http.StatusNoContent, http.StatusNoContent, http.StatusTooManyRequests} {
		if r := alice.postForm("/r/chat/typing", url.Values{}); r.StatusCode != want {
			t.Fatalf("typing signal %d: %d %s, want %d", i+1, r.StatusCode, r.body, want)
		}
	}
	check("after the logins", map[string]float64{
		`chat_logins_total{result="ok"}`:                   2,
		`chat_logins_total{result="401"}`:                  1,
		`chat_password_failures_total`:                     1,
		`chat_rate_limited_total{kind="typing"}`:           1,
		`chat_rate_limited_total{kind="posts_user"}`:       0, // every kind is there from the start
		`chat_rate_limited_total{kind="connections_addr"}`: 0,
	})

	// Three messages; a stream that resumes after the first, so two are
	// replayed; then one live message, one write to that stream.
	for _, text := range []string{"one", "two", "three"} {
		alice.post(text)
	}
	var page struct {
		Messages []struct{ ID string } `json:"messages"`
	}
	if err := json.Unmarshal([]byte(alice.get("/r/chat/history?before=99999999999999-0").body), &page); err != nil || len(page.Messages) != 3 {
		t.Fatalf("history: %v %+v", err, page)
	}
	s := alice.openStream(page.Messages[0].ID, "")
	s.collectMessages(t, 2, 10*time.Second)
	alice.post("four") // live: the room has a local stream now
	s.collectMessages(t, 1, 10*time.Second)
	waitFor(t, 10*time.Second, "the live message's write is measured", func() bool {
		return scrape(t, metricsURL)[`chat_delivery_seconds_count`] == 1
	})
	got := scrape(t, metricsURL)
	if got[`chat_streams_open{mode="pooled"}`] != 1 || got[`chat_rooms_local`] != 1 {
		t.Errorf("with one stream open: streams %v, rooms %v", got[`chat_streams_open{mode="pooled"}`], got[`chat_rooms_local`])
	}
	if got[`chat_delivery_seconds_sum`] <= 0 || got[`chat_delivery_seconds_sum`] > 10 {
		t.Errorf("delivery latency sum %v s for one loopback write", got[`chat_delivery_seconds_sum`])
	}
	s.Close()
	waitFor(t, 10*time.Second, "the stream's end is counted", func() bool {
		return scrape(t, metricsURL)[`chat_stream_closes_total{reason="client-gone"}`] == 1
	})
	check("after the resume", map[string]float64{
		`chat_messages_published_total`:                  4,
		`chat_publish_seconds_count`:                     4,
		`chat_replays_total`:                             1,
		`chat_replayed_events_total`:                     2,
		`chat_streams_open{mode="pooled"}`:               0,
		`chat_broker_events_total{kind="delivered"}`:     1,
		`chat_ready`:                                     1,
		`chat_stream_closes_total{reason="client-gone"}`: 1,
	})

	// A slow consumer: a stream whose client stops reading is evicted
	// while bob's keeps up.
	normal := bob.openStream("", "")
	slowUser := login(t, srv.URL, "slow")
	openStalledStream(t, slowUser, pageLastID(t, slowUser))
	waitFor(t, 10*time.Second, "both streams open", func() bool {
		return scrape(t, metricsURL)[`chat_streams_open{mode="pooled"}`] == 2
	})
	pad := strings.Repeat("x", 38000)
	big := 0
	for evicted := false; !evicted; {
		if big == 600 {
			t.Fatalf("the stalled stream was not evicted after %d messages of %d bytes", big, len(pad))
		}
		bob.post(fmt.Sprintf("big-%03d %s", big, pad))
		big++
		normal.collectMessages(t, 1, 10*time.Second)
		got := scrape(t, metricsURL)
		evicted = got[`chat_stream_closes_total{reason="slow"}`]+got[`chat_stream_closes_total{reason="stalled"}`] > 0
	}
	waitFor(t, 10*time.Second, "the evicted stream removed", func() bool {
		return scrape(t, metricsURL)[`chat_streams_open{mode="pooled"}`] == 1
	})
	got = scrape(t, metricsURL)
	t.Logf("evicted after %d messages: slow %v, stalled %v", big, got[`chat_stream_closes_total{reason="slow"}`], got[`chat_stream_closes_total{reason="stalled"}`])
	if n := got[`chat_stream_closes_total{reason="slow"}`] + got[`chat_stream_closes_total{reason="stalled"}`]; n != 1 {
		t.Errorf("%v evictions, want 1", n)
	}

	// A Redis restart: the subscription is re-established (by the broker,
	// or by go-redis reconnecting, which the broker answers with a fill
	// from history), delivery is confirmed again, and a message after it
	// arrives.
	before := scrape(t, metricsURL)
	rs.Restart()
	recovered := func(got map[string]float64) (resubscribed, filled bool) {
		return got[`chat_broker_events_total{kind="resubscribes"}`] > before[`chat_broker_events_total{kind="resubscribes"}`],
			got[`chat_broker_events_total{kind="fills"}`] > before[`chat_broker_events_total{kind="fills"}`]
	}
	waitFor(t, 20*time.Second, "the subscription re-established and confirmed", func() bool {
		got := scrape(t, metricsURL)
		resubscribed, filled := recovered(got)
		return (resubscribed || filled) && got[`chat_ready`] == 1
	})
	resubscribed, filled := recovered(scrape(t, metricsURL))
	t.Logf("after the Redis restart: resubscribed %v, filled from history %v", resubscribed, filled)
	waitFor(t, 20*time.Second, "a post accepted after the restart", func() bool {
		return bob.postForm("/post", url.Values{"message": {"after the restart"}}).StatusCode == http.StatusNoContent
	})
	if got := normal.collectMessages(t, 1, 10*time.Second); len(got) != 1 || got[0].Text != "after the restart" {
		t.Fatalf("after the restart the stream got %+v", got)
	}

	waitFor(t, 10*time.Second, "the last write measured", func() bool {
		return scrape(t, metricsURL)[`chat_delivery_seconds_count`] >= float64(1+big+1)
	})
	got = scrape(t, metricsURL)
	published := float64(4 + big + 1)
	for name, want := range map[string]float64{
		`chat_messages_published_total`:              published,
		`chat_publish_seconds_count`:                 published,
		`chat_broker_events_total{kind="delivered"}`: published - 3, // the first three had no local stream
		`chat_broker_events_total{kind="malformed"}`: 0,
		`chat_logins_total{result="ok"}`:             3,
		`chat_replays_total`:                         1,
		`chat_streams_open{mode="pooled"}`:           1,
		`chat_rooms_local`:                           1,
		`chat_ready`:                                 1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("at the end: %s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	// One write per message to bob's stream, and some to the stalled one
	// before it was cut off.
	if n := got[`chat_delivery_seconds_count`]; n < float64(1+big+1) || n > float64(1+2*big+1) {
		t.Errorf("chat_delivery_seconds_count %v, want %d to %d", n, 1+big+1, 1+2*big+1)
	}
	if got[`chat_probe_rtt_seconds_count`] < 1 || got[`chat_probe_rtt_seconds_sum`] <= 0 {
		t.Errorf("probe round trips: %v, sum %v s", got[`chat_probe_rtt_seconds_count`], got[`chat_probe_rtt_seconds_sum`])
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "chat_redis_pool_hit_total", "chat_redis_pool_conn_total_current",
		`chat_broker_events_total{kind="gaps"}`, `chat_broker_events_total{kind="fills"}`} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing from the metrics", name)
		}
	}
	// pprof on the private listener only.
	base := strings.TrimSuffix(metricsURL, "/metrics")
	if resp, err := http.Get(base + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("pprof on the metrics listener: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if r := alice.get("/debug/pprof/"); r.StatusCode != http.StatusNotFound {
		t.Errorf("pprof on the public listener: %d, want 404", r.StatusCode)
	}
}

// TestRateLimitedByKind: each limit a client meets is counted under its
// own kind in chat_rate_limited_total, once per refusal, and no other kind
// moves.
func TestRateLimitedByKind(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-metrics-addr", "127.0.0.1:0", "-rate-logins", "4", "-rate-passwords", "1",
		"-rate-posts", "1", "-rate-burst", "1", "-rate-joins", "1", "-streams-per-session", "1")
	metrics := metricsURL(t, srv.logs)
	want := func(what string, r response, status int) {
		t.Helper()
		if r.StatusCode != status {
			t.Fatalf("%s: %d %s, want %d", what, r.StatusCode, r.body, status)
		}
	}
	alice := newClient(t, srv.URL)
	want("reserve alice", alice.postForm("/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}}), http.StatusSeeOther)
	other := newClient(t, srv.URL)
	want("a wrong password", other.postForm("/login", url.Values{"user": {"alice"}, "password": {"wrong password here"}}), http.StatusUnauthorized)
	want("a second try within the minute", other.postForm("/login", url.Values{"user": {"alice"}, "password": {"another wrong one"}}), http.StatusTooManyRequests)
	bob := login(t, srv.URL, "bob") // the 4th login from this address
	want("a 5th login", newClient(t, srv.URL).postForm("/login", url.Values{"user": {"carol"}}), http.StatusTooManyRequests)
	bob.post("hello")
	want("a second post at once", bob.postForm("/post", url.Values{"message": {"again"}}), http.StatusTooManyRequests)
	want("join a room", bob.postForm("/r/one/join", url.Values{}), http.StatusNoContent)
	want("join another", bob.postForm("/r/two/join", url.Values{}), http.StatusTooManyRequests)
	bob.openStream("", "")
	if status, body, _ := streamStatus(t, bob); status != http.StatusTooManyRequests {
		t.Fatalf("a second stream: %d %q, want 429", status, body)
	}
	got := scrape(t, metrics)
	for _, kind := range limitKinds() {
		n := 0.0
		switch kind {
		case limitLogins, limitPasswords, limitPostsUser, limitJoins, limitStreamsSession:
			n = 1
		}
		if v, ok := got[`chat_rate_limited_total{kind="`+kind+`"}`]; !ok || v != n {
			t.Errorf("chat_rate_limited_total{kind=%q} = %v (present %v), want %v", kind, v, ok, n)
		}
	}
	if got[`chat_password_failures_total`] != 1 {
		t.Errorf("chat_password_failures_total = %v, want 1 (the refused second try checked no password)", got[`chat_password_failures_total`])
	}
}

// TestRateLimitedSlowModeAndConnections: a room's slow mode and the
// per-address connection cap (a refusal at accept) are counted too.
func TestRateLimitedSlowModeAndConnections(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-metrics-addr", "127.0.0.1:0", "-rate-posts", "0", "-slow-mode", "1m", "-conns-per-addr", "8")
	metrics := metricsURL(t, srv.logs)
	alice := login(t, srv.URL, "alice")
	alice.post("first")
	if r := alice.postForm("/post", url.Values{"message": {"second"}}); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second post in slow mode: %d %s", r.StatusCode, r.body)
	}
	// 12 more connections from this address: at least 4 are over the cap
	// of 8 (the test's own may hold some places already).
	u, _ := url.Parse(srv.URL)
	for range 12 {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, 10*time.Second, "the refused connections counted", func() bool {
		return scrape(t, metrics)[`chat_rate_limited_total{kind="connections_addr"}`] >= 4
	})
	got := scrape(t, metrics)
	if v := got[`chat_rate_limited_total{kind="connections_addr"}`]; v > 12 {
		t.Errorf("%v connections counted as refused, of 12", v)
	}
	if v := got[`chat_rate_limited_total{kind="slow_mode"}`]; v != 1 {
		t.Errorf("chat_rate_limited_total{kind=\"slow_mode\"} = %v, want 1", v)
	}
}
