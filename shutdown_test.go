package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestShutdownEndsStreams runs the server binary in both stream modes, opens
// streams, and sends SIGINT or SIGTERM: every stream ends cleanly (EOF after
// a disconnect event with reason shutdown), and the process exits with
// status 0 well within its shutdown timeout.
func TestShutdownEndsStreams(t *testing.T) {
	if _, err := buildBinary(); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	for _, tc := range []struct {
		mode string
		sig  os.Signal
	}{
		{"pooled", syscall.SIGTERM},
		{"pooled", syscall.SIGINT},
		{"goroutine", syscall.SIGTERM},
		{"goroutine", syscall.SIGINT},
	} {
		t.Run(tc.mode+"/"+tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			// A long shutdown timeout: if the streams were not ended,
			// the exit would come late and the test would notice.
			p := startProcess(t, rs.URL(), "127.0.0.1:0", "-stream-mode", tc.mode, "-shutdown-timeout", "30s")
			alice := login(t, p.URL, "alice")
			bob := login(t, p.URL, "bob")
			streams := []*rawStream{openRawStream(t, alice), openRawStream(t, bob), openRawStream(t, alice)}
			alice.post("before shutdown " + tc.mode)
			for _, s := range streams {
				s.waitFor(t, `"text":"before shutdown `+tc.mode+`"`, 10*time.Second)
			}

			start := time.Now()
			if err := p.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			for i, s := range streams {
				rest, err := s.end(t, 5*time.Second)
				if err != nil {
					t.Errorf("stream %d did not end with a clean EOF: %v", i, err)
				}
				if !strings.Contains(rest, "event: disconnect\ndata: {\"reason\":\"shutdown\"}\n\n") {
					t.Errorf("stream %d ended without a disconnect event (reason shutdown); its last bytes: %q", i, rest)
				}
			}
			select {
			case err := <-p.done:
				p.done <- err
				if err != nil {
					t.Fatalf("exit: %v, want status 0\n%s", err, p.logs)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("still running 5 s after %v\n%s", tc.sig, p.logs)
			}
			took := time.Since(start)
			logs := p.logs.String()
			for _, bad := range []string{"graceful shutdown incomplete", "streams still open at shutdown deadline", "panic", "DATA RACE"} {
				if strings.Contains(logs, bad) {
					t.Errorf("log contains %q:\n%s", bad, logs)
				}
			}
			if !strings.Contains(logs, `msg=stopped`) {
				t.Errorf("no \"stopped\" log line:\n%s", logs)
			}
			t.Logf("%s %v: exited %v after the signal", tc.mode, tc.sig, took)
		})
	}
}

// TestShutdownIdle stops a server that has no open stream or request: it
// exits with status 0 at once.
func TestShutdownIdle(t *testing.T) {
	rs := redistest.Start(t)
	p := startProcess(t, rs.URL(), "127.0.0.1:0", "-shutdown-timeout", "30s")
	login(t, p.URL, "alice").post("one message, then quiet") // used, then idle
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("idle server still running 5 s after SIGTERM\n%s", p.logs)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("idle shutdown took %v", took)
	}
	if _, err := http.Get(p.URL + "/healthz"); err == nil {
		t.Errorf("%s still answers after exit", p.URL)
	}
}

// TestShutdownEmbeddedRedis is `go run .` with no Redis configured: run
// with no -redis flag and an empty environment says it uses an embedded
// Redis and serves a working chat, then stops cleanly.
func TestShutdownEmbeddedRedis(t *testing.T) {
	srv := runServer(t, []string{"chatroom", "-addr", "127.0.0.1:0", "-data-dir", t.TempDir()}, func(string) string { return "" })
	base, logs := srv.URL, srv.logs
	out := logs.String()
	for _, want := range []string{"using an embedded Redis, saved to -data-dir", "redis=embedded", `msg="chat is ready" url=http://127.0.0.1:`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	alice := login(t, base, "alice")
	bob := login(t, base, "bob")
	stream := bob.openStream("", "")
	alice.post("hello through the embedded redis")
	got := stream.collectMessages(t, 1, 5*time.Second)
	if len(got) != 1 || got[0].User != "alice" || got[0].Text != "hello through the embedded redis" {
		t.Fatalf("bob received %+v", got)
	}
	srv.stop()
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no \"stopped\" log line:\n%s", logs)
	}
}

// rawStream is an open /stream read line by line, keeping the bytes and how
// the body ended (nil for a clean EOF).
type rawStream struct {
	lines  chan string // closed at the end of the body
	err    chan error  // the body's final read error (nil: clean EOF)
	cancel context.CancelFunc
}

func openRawStream(t *testing.T, c *chatClient) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/stream", nil)
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	s := &rawStream{lines: make(chan string, 1000), err: make(chan error, 1), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				s.lines <- line
			}
			if err != nil {
				close(s.lines)
				if errors.Is(err, io.EOF) {
					err = nil
				}
				s.err <- err
				return
			}
		}
	}()
	t.Cleanup(cancel)
	return s
}

// waitFor reads lines until one contains substr.
func (s *rawStream) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended while waiting for %q", substr)
			}
			if strings.Contains(line, substr) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q within %v", substr, timeout)
		}
	}
}

// end waits until the server ends the stream and returns what came before
// the end and how the body ended.
func (s *rawStream) end(t *testing.T, timeout time.Duration) (string, error) {
	t.Helper()
	var rest strings.Builder
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return rest.String(), <-s.err
			}
			rest.WriteString(line)
		case <-deadline:
			t.Fatalf("stream still open %v after the signal; got %q", timeout, rest.String())
		}
	}
}
