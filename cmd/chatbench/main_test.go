package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs `chatbench -smoke` in-process against the real chat server
// (built from the module root) and a real redis-server: 0 loss, no
// duplicates, correct order.
func TestSmoke(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := findModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "chatroom-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("the chat server at the repo root does not build yet, so the smoke bench cannot run: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed (make deps installs it): the smoke bench needs a real Redis")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "smoke.json")
	err = run(ctx, []string{"-smoke", "-server-bin", bin, "-json", jsonPath, "-deadline", "2m"}, &out)
	t.Logf("chatbench output:\n%s", out.String())
	if err != nil {
		t.Fatalf("smoke bench: %v", err)
	}
	checkSmokeJSON(t, jsonPath, 10)
}

func checkSmokeJSON(t *testing.T, path string, subs int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.Subs != subs || r.Msgs == 0 || r.Accepted != r.Msgs || r.Deliveries != int64(subs*r.Msgs) ||
		r.Loss != 0 || r.Dups != 0 || r.OrderErrs != 0 {
		t.Errorf("result = %+v", r)
	}
}

func runFake(t *testing.T, f *fakeChat, extra ...string) (string, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	args := append([]string{"-target", srv.URL, "-subs", "5", "-rate", "100", "-duration", "500ms",
		"-drain", "1s", "-settle", "0", "-check", "-q"}, extra...)
	err := run(ctx, args, &out)
	return out.String(), err
}

func TestBenchAgainstFake(t *testing.T) {
	for _, hijack := range []bool{false, true} {
		t.Run("hijack="+strconv.FormatBool(hijack), func(t *testing.T) {
			f := newFakeChat()
			f.hijack = hijack
			jsonPath := filepath.Join(t.TempDir(), "r.json")
			out, err := runFake(t, f, "-json", jsonPath)
			if err != nil {
				t.Fatalf("bench: %v\n%s", err, out)
			}
			t.Logf("output:\n%s", out)
			for _, col := range tableHeader {
				if !strings.Contains(out, col) {
					t.Errorf("table lacks column %q:\n%s", col, out)
				}
			}
			checkSmokeJSON(t, jsonPath, 5)
		})
	}
}

func TestBenchReconnects(t *testing.T) {
	f := newFakeChat()
	f.closeAfter = 10
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	out, err := runFake(t, f, "-json", jsonPath)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	checkSmokeJSON(t, jsonPath, 5)
	data, _ := os.ReadFile(jsonPath)
	if !strings.Contains(string(data), `"reconnects": 1,`) {
		t.Errorf("want 1 reconnect in %s", data)
	}
}

// TestBenchStalled runs the stalled subscribers against the fake: with a
// server that closes them (write timeout) and with one that never does.
func TestBenchStalled(t *testing.T) {
	for _, evict := range []bool{true, false} {
		t.Run("evict="+strconv.FormatBool(evict), func(t *testing.T) {
			f := newFakeChat()
			if evict {
				f.writeTimeout = 200 * time.Millisecond
			}
			jsonPath := filepath.Join(t.TempDir(), "r.json")
			// 2,000 messages of ~200 bytes: a stalled stream's socket
			// buffers (about 150 KB, see stalledMSS) are full halfway.
			out, err := runFake(t, f, "-scenario", "large,slow", "-subs", "6", "-stalled", "2",
				"-rate", "2000", "-duration", "1s", "-json", jsonPath)
			if err != nil {
				t.Fatalf("bench: %v\n%s", err, out)
			}
			t.Logf("output:\n%s", out)
			data, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatal(err)
			}
			var rep report
			if err := json.Unmarshal(data, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != 2 {
				t.Fatalf("%d results, want 2", len(rep.Results))
			}
			large, slow := rep.Results[0], rep.Results[1]
			if large.Stalled != 0 || large.Deliveries != int64(6*large.Msgs) {
				t.Errorf("large: %d stalled, %d deliveries of %d messages; want 0 and all 6 subscribers'",
					large.Stalled, large.Deliveries, large.Msgs)
			}
			wantClosed := 0
			if evict {
				wantClosed = 2
			}
			if slow.Subs != 6 || slow.Stalled != 2 || slow.StalledClosed != wantClosed || slow.Loss != 0 ||
				slow.Expected != int64(4*slow.Accepted) || slow.Deliveries != int64(4*slow.Msgs) {
				t.Errorf("slow: subs %d stalled %d closed %d (want %d) loss %d expected %d deliveries %d of %d messages",
					slow.Subs, slow.Stalled, slow.StalledClosed, wantClosed, slow.Loss, slow.Expected, slow.Deliveries, slow.Msgs)
			}
			for _, n := range slow.Notes {
				if strings.HasPrefix(n, "drain timeout") {
					t.Errorf("slow: %s (the drain must wait for the healthy subscribers only)", n)
				}
			}
			r := rep.SlowVsLarge
			if r == nil || r.LargeP99Ms != large.P99Ms || r.SlowP99Ms != slow.P99Ms || r.Ratio != slow.P99Ms/large.P99Ms ||
				r.Target != 1.5 || r.Met != (r.Ratio <= 1.5) {
				t.Errorf("slow_vs_large = %+v, want slow p99 %v over large p99 %v", r, slow.P99Ms, large.P99Ms)
			}
			if !strings.Contains(out, "slow/large p99: ") || !strings.Contains(out, fmt.Sprintf("2/%d", wantClosed)) {
				t.Errorf("output lacks the ratio line or the stalled/closed cell 2/%d", wantClosed)
			}
		})
	}
}

func TestBenchDetectsFaults(t *testing.T) {
	t.Run("loss", func(t *testing.T) {
		f := newFakeChat()
		f.dropSeq = 3
		out, err := runFake(t, f)
		if err == nil || !strings.Contains(err.Error(), "1 lost deliveries") {
			t.Fatalf("err = %v, want 1 lost delivery\n%s", err, out)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		f := newFakeChat()
		f.dupSeq = 2
		out, err := runFake(t, f)
		// A duplicate also repeats a stream ID on every subscriber.
		if err == nil || !strings.Contains(err.Error(), "5 duplicate deliveries") || !strings.Contains(err.Error(), "order errors") {
			t.Fatalf("err = %v, want 5 duplicates and order errors\n%s", err, out)
		}
	})
}
