package main

import (
	"encoding/json"
	"io"
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

func TestMetrics(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-metrics-addr", "127.0.0.1:0", "-heartbeat", "200ms", "-rate-posts", "0")
	m := metricsLine.FindStringSubmatch(srv.logs.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", srv.logs)
	}
	metricsURL := m[1]

	// Two logins (one reserving its name), one wrong password.
	alice := newClient(t, srv.URL)
	if r := alice.postForm("/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.StatusCode, r.body)
	}
	login(t, srv.URL, "bob")
	if r := newClient(t, srv.URL).postForm("/login", url.Values{"user": {"alice"}, "password": {"wrong password here"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s", r.StatusCode, r.body)
	}
	// Three messages; a stream that resumes after the first, so two are
	// replayed.
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
	got := scrape(t, metricsURL)
	if got[`chat_streams_open{mode="pooled"}`] != 1 || got[`chat_rooms_local`] != 1 {
		t.Errorf("with one stream open: streams %v, rooms %v", got[`chat_streams_open{mode="pooled"}`], got[`chat_rooms_local`])
	}
	s.Close()
	waitFor(t, 10*time.Second, "the stream's end is counted", func() bool {
		return scrape(t, metricsURL)[`chat_stream_closes_total{reason="client-gone"}`] == 1
	})

	got = scrape(t, metricsURL)
	for name, want := range map[string]float64{
		`chat_messages_published_total`:              4,
		`chat_publish_seconds_count`:                 4,
		`chat_logins_total{result="ok"}`:             2,
		`chat_logins_total{result="401"}`:            1,
		`chat_replays_total`:                         1,
		`chat_replayed_events_total`:                 2,
		`chat_streams_open{mode="pooled"}`:           0,
		`chat_broker_events_total{kind="delivered"}`: 1,
		`chat_ready`: 1,
		`chat_stream_closes_total{reason="client-gone"}`: 1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "chat_redis_pool_hit_total", "chat_redis_pool_conn_total_current"} {
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
