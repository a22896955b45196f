package main

import (
	"errors"
	"flag"
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	var v []uint32
	for i := 1; i <= 100; i++ {
		v = append(v, uint32(i))
	}
	tests := []struct {
		vals []uint32
		p    float64
		want uint32
	}{
		{v, 50, 50}, {v, 90, 90}, {v, 99, 99}, {v, 100, 100}, {v, 0.1, 1},
		{[]uint32{7}, 50, 7}, {[]uint32{7}, 99, 7},
		{[]uint32{1, 2}, 50, 1}, {[]uint32{1, 2}, 51, 2},
		{[]uint32{10, 20, 30, 40, 50, 60, 70, 80, 90, 1000}, 99, 1000},
		{[]uint32{10, 20, 30, 40, 50, 60, 70, 80, 90, 1000}, 90, 90},
		{nil, 50, 0},
	}
	for _, tt := range tests {
		if got := percentile(tt.vals, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %d, want %d", tt.vals, tt.p, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	in := []float64{3, 1, 2}
	if got := median(in); got != 2 {
		t.Errorf("median = %v", got)
	}
	if in[0] != 3 {
		t.Error("median modified its input")
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) not NaN")
	}
}

func TestMergeRuns(t *testing.T) {
	rs := []*result{
		{Scenario: "x", Run: 1, P99Ms: 10, Loss: 0, DelivS: 100, PostErrors: map[string]int{}},
		{Scenario: "x", Run: 2, P99Ms: 30, Loss: 5, DelivS: 300, PostErrors: map[string]int{"503": 2}},
		{Scenario: "x", Run: 3, P99Ms: 20, Loss: 1, DelivS: 200, PostErrors: map[string]int{"503": 1}},
	}
	m := mergeRuns(rs)
	if m.P99Ms != 20 || m.DelivS != 200 || m.Loss != 5 || m.PostErrors["503"] != 2 || m.Runs != 3 || m.Run != 0 {
		t.Errorf("merge = %+v", m)
	}
}

func TestOrderCheck(t *testing.T) {
	// Message 0: POST 0..10, message 1: POST 20..30 (started after 0 was
	// answered), message 2: POST 25..40 (overlaps 1).
	posts := []postRecord{{0, 10, "204"}, {20, 30, "204"}, {25, 40, "204"}}
	tests := []struct {
		seqs     []uint32
		rt, invs int64
	}{
		{[]uint32{0, 1, 2}, 0, 0},
		{[]uint32{0, 2, 1}, 0, 1}, // overlapping POSTs: either order is fine
		{[]uint32{1, 0, 2}, 1, 1}, // 0 was answered before 1 started
		{[]uint32{2, 0}, 1, 1},
	}
	for _, tt := range tests {
		rt, inv := orderCheck(tt.seqs, posts)
		if rt != tt.rt || inv != tt.invs {
			t.Errorf("orderCheck(%v) = %d, %d; want %d, %d", tt.seqs, rt, inv, tt.rt, tt.invs)
		}
	}
}

func TestProcParsers(t *testing.T) {
	stat := "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || math.Abs(cpu-300/clockTicks) > 1e-9 {
		t.Errorf("parseStatCPU = %v, %v", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat line accepted")
	}
	rss, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  4321 kB\n"))
	if err != nil || rss != 4321 {
		t.Errorf("parseVmRSS = %v, %v", rss, err)
	}
	busy, err := parseBusy([]byte("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4\n"))
	if err != nil || math.Abs(busy-161/clockTicks) > 1e-9 {
		t.Errorf("parseBusy = %v, %v", busy, err)
	}
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n" +
		"   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n"
	ino := listenInodes([]byte(tcp), 8080)
	if len(ino) != 1 || !ino["12345"] {
		t.Errorf("listenInodes = %v", ino)
	}
}

func TestCheckTarget(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:5000", "http://localhost:80", "http://[::1]:8080/"} {
		if _, err := checkTarget(ok); err != nil {
			t.Errorf("checkTarget(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"http://example.com:80", "http://10.0.0.1:5000", "https://127.0.0.1:5000", "http://127.0.0.1", "127.0.0.1:80"} {
		if _, err := checkTarget(bad); err == nil {
			t.Errorf("checkTarget(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"redis://127.0.0.1:6379/0", "redis://localhost", "unix:///tmp/r.sock", "rediss://[::1]:6380"} {
		if _, err := checkRedisURL(ok); err != nil {
			t.Errorf("checkRedisURL(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"redis://10.1.1.1:6379", "http://127.0.0.1:6379"} {
		if _, err := checkRedisURL(bad); err == nil {
			t.Errorf("checkRedisURL(%q) accepted", bad)
		}
	}
}

func TestParseFlags(t *testing.T) {
	var sb strings.Builder
	c, err := parseFlags([]string{"-smoke"}, &sb)
	if err != nil || !c.check || c.duration.Seconds() != 2 || len(c.scenarios) != 1 || c.scenarios[0].Name != "small" {
		t.Fatalf("smoke config = %+v, %v", c, err)
	}
	c, err = parseFlags([]string{"-scenario", "all"}, &sb)
	if err != nil || len(c.scenarios) != 10 {
		t.Fatalf("all = %v, %v", c, err)
	}
	if c.msgs(c.shape(c.scenarios[2])) != 1000 {
		t.Errorf("large msgs = %d, want 1000", c.msgs(c.shape(c.scenarios[2])))
	}
	// slow is large with 50 stalled subscribers, run right after it.
	large, slow := c.shape(c.scenarios[2]), c.shape(c.scenarios[3])
	if slow.Name != "slow" || slow.Stalled != 50 || large.Stalled != 0 ||
		slow.Subs != large.Subs || slow.Rate != large.Rate || slow.Instances != large.Instances {
		t.Errorf("large = %+v, slow = %+v", large, slow)
	}
	c, err = parseFlags([]string{"-scenario", "large,slow", "-subs", "10", "-stalled", "3"}, &sb)
	if err != nil || c.shape(c.scenarios[0]).Stalled != 0 || c.shape(c.scenarios[1]).Stalled != 3 {
		t.Errorf("-stalled 3: %+v, %v", c.scenarios, err)
	}
	c, err = parseFlags([]string{"-scenario", "slow", "-subs", "10", "-stalled", "30"}, &sb)
	if err != nil || c.shape(c.scenarios[0]).Stalled != 10 {
		t.Errorf("-stalled above -subs: %+v, %v", c.scenarios, err)
	}
	for _, bad := range [][]string{{"-scenario", "nope"}, {"-target", "http://8.8.8.8:80"}, {"-runs", "0"}, {"extra"}, {"-stalled", "-2"}} {
		if _, err := parseFlags(bad, &sb); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	sb.Reset()
	if _, err := parseFlags([]string{"-h"}, &sb); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	for _, want := range []string{"-scenario", "-smoke", "-taskset", "-target", "-redis", "-runs", "-json", "-duration", "-deadline", "idle", "slow", "-stalled", "stalled/closed", "target ≤ 1.5×"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
