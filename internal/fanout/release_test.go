package fanout

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestReleaseOnEveryEnd: however a stream ends, its release is called as
// it ends (not only when the hub shuts down), and, as the test helpers'
// release check makes sure of every stream, once, after it left the
// registry, with no lock of the hub or the subscriber held. Each case has
// a second stream of the same session and no room, which only logging out
// and shutting down end.
func TestReleaseOnEveryEnd(t *testing.T) {
	rooms := []string{"chat", "dev"}
	for _, tc := range []struct {
		name     string
		cfg      func(*Config)
		sock     socketOpts
		before   hook
		end      func(t *testing.T, h *Hub, s *Subscriber, c *client)
		reason   Reason
		bothEnds bool // the stream of no room ends too
	}{{
		name:   "cancelled while served",
		end:    func(_ *testing.T, _ *Hub, s *Subscriber, _ *client) { s.Cancel() },
		reason: ReasonNone,
	}, {
		name: "client gone",
		cfg:  func(c *Config) { c.Heartbeat = 20 * time.Millisecond }, // a pooled stream's peek
		end: func(t *testing.T, _ *Hub, _ *Subscriber, c *client) {
			c.start()
			if err := c.conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
		},
		reason: ReasonClientGone,
	}, {
		name: "evicted as slow during the replay",
		cfg:  func(c *Config) { c.QueueEvents = 4 },
		before: func(s *Subscriber, _ io.Writer) {
			for i := 1; i <= 5; i++ {
				s.hub.Broadcast("dev", roomMessage("dev", i, 100))
			}
		},
		end:    func(*testing.T, *Hub, *Subscriber, *client) {},
		reason: ReasonSlow,
	}, {
		name: "evicted as slow while served",
		cfg:  func(c *Config) { c.QueueEvents = 16 },
		sock: smallBuffers(),
		end: func(_ *testing.T, h *Hub, s *Subscriber, _ *client) {
			for i := 1; h.Stats().Evictions == 0; i++ {
				h.Broadcast("dev", roomMessage("dev", i, 4096))
			}
		},
		reason: ReasonSlow,
	}, {
		name: "stalled",
		cfg:  func(c *Config) { c.WriteTimeout = 300 * time.Millisecond },
		sock: smallBuffers(),
		end: func(_ *testing.T, h *Hub, _ *Subscriber, _ *client) {
			for i := 1; i <= 100; i++ { // 400 KB
				h.Broadcast("chat", roomMessage("chat", i, 4096))
			}
		},
		reason: ReasonStalled,
	}, {
		name:     "logged out",
		end:      func(_ *testing.T, h *Hub, _ *Subscriber, _ *client) { h.EndSession("s") },
		reason:   ReasonLoggedOut,
		bothEnds: true,
	}, {
		name:   "logged out during the replay",
		before: func(s *Subscriber, _ io.Writer) { s.hub.EndSession("s") },
		end:    func(*testing.T, *Hub, *Subscriber, *client) {},
		reason: ReasonLoggedOut,
	}, {
		name: "shut down",
		end: func(t *testing.T, h *Hub, _ *Subscriber, c *client) {
			ctx, cancel := context.WithTimeout(context.Background(), never)
			defer cancel()
			h.Shutdown(ctx)
			select {
			case <-c.release.done:
			default:
				t.Error("Shutdown returned before the release of a stream it ended")
			}
		},
		reason:   ReasonShutdown,
		bothEnds: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			modes(t, cfg, tc.sock, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
				var noRoom *client
				if tc.before == nil { // else the hook ends the stream before it opens
					_, noRoom = open(nil, "s", socketOpts{}, nil)
				}
				s, c := open(rooms, "s", tc.sock, tc.before)
				tc.end(t, h, s, c)
				select {
				case <-s.Done():
				case <-time.After(never):
					t.Fatal("the stream did not end")
				}
				c.release.await()
				if n := h.Stats().Closes[tc.reason]; n < 1 {
					t.Fatalf("no stream ended with %v", tc.reason)
				}
				if noRoom == nil {
					return
				}
				if tc.bothEnds {
					noRoom.release.await()
					return
				}
				select {
				case <-noRoom.release.done:
					t.Fatal("the stream of no room was released, though it did not end")
				default:
				}
			})
		})
	}
}

// TestReleaseBeforeServed: a stream cancelled before it was attached or
// served (its replay failed) is released by Cancel, and not again when it
// is attached or served all the same (the release check counts the calls
// when the test ends).
func TestReleaseBeforeServed(t *testing.T) {
	h, _ := startHub(t, testConfig())
	for _, mode := range []Mode{Pooled, Goroutine} {
		s, rc, err := subscribe(t, h, []string{"chat", "dev"}, "s", mode)
		if err != nil {
			t.Fatal(err)
		}
		s.Cancel()
		select {
		case <-rc.done: // at once: Cancel removed it itself
		default:
			t.Fatalf("%v: not released by Cancel", mode)
		}
		if mode == Goroutine {
			s.Serve(context.Background(), discard{}) // returns at once
			continue
		}
		srv, c := tcpPair(t, socketOpts{})
		defer c.Close()
		if err := s.Attach(srv); err != nil { // closes srv
			t.Fatal(err)
		}
	}
}

// blockingWriter is a StreamWriter whose writes wait until open is closed.
type blockingWriter struct{ open <-chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.open
	return len(p), nil
}
func (blockingWriter) Flush() error                     { return nil }
func (blockingWriter) SetWriteDeadline(time.Time) error { return nil }

// TestShutdownWaitsForRelease: Shutdown counts a stream as gone only once
// its release has returned, and that of every stream, not only of the last
// one to leave the registry. Stream a is removed first and its release
// holds on; stream b, whose farewell write waits for that, is removed
// last, with a release that returns at once. Once b's Serve has returned,
// the hub must still be waiting for a.
func TestShutdownWaitsForRelease(t *testing.T) {
	h, logs := startHub(t, testConfig())
	entered, gate := make(chan struct{}), make(chan struct{})
	a, err := h.Subscribe([]string{"chat"}, "a", Goroutine, func() {
		close(entered)
		<-gate
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe([]string{"dev"}, "b", Goroutine, func() {})
	if err != nil {
		t.Fatal(err)
	}
	servedA, servedB := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(servedA)
		a.Serve(context.Background(), discard{})
	}()
	go func() {
		defer close(servedB)
		b.Serve(context.Background(), blockingWriter{entered})
	}()
	shutDown := make(chan struct{})
	go func() {
		defer close(shutDown)
		ctx, cancel := context.WithTimeout(context.Background(), never)
		defer cancel()
		h.Shutdown(ctx)
	}()
	<-servedB // b removed and released, after a was removed
	select {
	case <-h.gone:
		t.Error("the hub counted every stream gone while a release was still running")
	default:
	}
	close(gate)
	<-servedA
	<-shutDown
	if n := logs.count(slogWarn, "streams not all ended and released at the shutdown deadline", nil); n != 0 {
		t.Fatal("Shutdown gave up at its deadline instead of seeing every stream gone")
	}
}
