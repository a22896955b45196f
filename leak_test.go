package main

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/internal/redistest"
)

// TestNoGoroutineLeaks: after streams of both modes were opened, used and
// ended (closed by the client, or open when the server shuts down) and the
// server has stopped, no goroutine of the server, the hub, the broker or the
// Redis client is left behind.
func TestNoGoroutineLeaks(t *testing.T) {
	rs := redistest.Start(t)
	// Goroutines that exist now (the test framework's, other tests',
	// redistest's process waiters) are not ours to judge.
	opts := []goleak.Option{goleak.IgnoreCurrent()}

	for _, mode := range streamModes {
		srv := startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode, "-heartbeat", "50ms")
		alice := login(t, srv.URL, "alice")
		bob := login(t, srv.URL, "bob")

		// Streams the client closes.
		var closed []*sseStream
		for range 3 {
			closed = append(closed, alice.openStream("", ""))
		}
		bob.post("hello " + mode)
		for _, s := range closed {
			if got := s.collectMessages(t, 1, 10*time.Second); len(got) != 1 {
				t.Fatalf("%s: stream got %d messages", mode, len(got))
			}
			s.Close()
		}
		// The server notices closed streams at its next write (a heartbeat
		// at the latest).
		waitFor(t, 10*time.Second, mode+": closed streams removed", func() bool { return serverCounters(t, srv).Streams == 0 })

		// Streams still open when the server shuts down, one of them
		// resuming from history.
		open := []*sseStream{bob.openStream("", ""), bob.openStream(midID(t, rs, "hello "+mode), "")}
		bob.post("bye " + mode)
		for _, s := range open {
			if got := s.collectMessages(t, 1, 10*time.Second); len(got) != 1 {
				t.Fatalf("%s: stream got %d messages", mode, len(got))
			}
		}
		srv.stop()
		for _, s := range open {
			waitFor(t, 10*time.Second, mode+": stream ended by the shutdown", func() bool {
				select {
				case <-s.done:
					return true
				default:
					return false
				}
			})
			s.Close()
		}
	}
	// The test's own HTTP clients keep idle keep-alive connections.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	goleak.VerifyNone(t, opts...)
}
