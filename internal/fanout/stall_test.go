package fanout

import (
	"slices"
	"testing"
	"time"
)

func stateOf(s *Subscriber) writeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// lastID is the ID of the last message event in evs.
func lastID(evs []sseEvent) string {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == "message" {
			return evs[i].ID
		}
	}
	return ""
}

// TestStalledPeerDoesNotHoldWriter: with a single shared writer, a client
// that never reads (its socket fills after some KiB) does not delay a
// healthy one: each event reaches the healthy client while the stalled
// stream, with a write timeout of a minute, is still open. Were the writer
// to wait on the full socket, the healthy client would wait that minute.
func TestStalledPeerDoesNotHoldWriter(t *testing.T) {
	cfg := testConfig()
	cfg.Writers = 1
	h, _ := startHub(t, cfg)
	stuck, _ := pooled(t, h, []string{"chat"}, "stuck", smallBuffers(), nil) // never read
	_, healthy := pooled(t, h, []string{"chat"}, "healthy", socketOpts{}, nil)
	healthy.start()

	const n = 300 // 1.2 MB: far more than the stalled socket's buffers
	for i := 1; i <= n; i++ {
		h.Broadcast("chat", message(i, 4096))
		want := ids(i, i)[0]
		healthy.await("event "+want, func(evs []sseEvent, _ bool) bool { return lastID(evs) == want })
	}
	if got := stateOf(stuck); got != draining {
		t.Fatalf("the stalled stream is in state %d, not waiting on its full socket", got)
	}
	if st := h.Stats(); st.Streams != 2 || st.Evictions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSlowSteadyPeerNotStalled: a client that reads slowly but steadily
// takes several times WriteTimeout to receive a burst that does not fit
// its socket buffers, but makes progress all along: it gets every event
// and its stream stays open. (WriteTimeout is generous, and the reader
// keeps to its rate on average, so that a busy machine does not starve the
// reader for that long.)
func TestSlowSteadyPeerNotStalled(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = time.Second
	modes(t, cfg, smallBuffers(), func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		s, c := open([]string{"chat"}, "s", smallBuffers(), nil)
		const n, size, rate = 150, 4096, 200 << 10 // 600 KB at 200 KB/s: 3 s
		for i := 1; i <= n; i++ {
			h.Broadcast("chat", message(i, size))
		}
		start := time.Now()
		c.trickle(rate)
		got := describe(c.await("every event", func(evs []sseEvent, ended bool) bool { return len(evs) >= n || ended }))
		if !slices.Equal(got, ids(1, n)) {
			t.Fatalf("got %d events (last %q), want %d", len(got), last(got), n)
		}
		t.Logf("received %d KB in %v with a write timeout of %v", n*size>>10, time.Since(start).Round(time.Millisecond), cfg.WriteTimeout)
		select {
		case <-s.Done():
			t.Fatal("the slow stream was closed")
		default:
		}
		if st := h.Stats(); st.Closes[ReasonStalled] != 0 || st.Streams != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestNoProgressClosedAsStalled: a client that takes no byte for
// WriteTimeout while bytes are pending is closed as stalled, counted and
// logged once; what it had received is an intact prefix of the events.
func TestNoProgressClosedAsStalled(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = 300 * time.Millisecond
	modes(t, cfg, smallBuffers(), func(t *testing.T, h *Hub, logs *logRecorder, open opener) {
		s, c := open([]string{"chat"}, "s", smallBuffers(), nil)
		const n = 100 // 400 KB
		for i := 1; i <= n; i++ {
			h.Broadcast("chat", message(i, 4096))
		}
		eventually(t, never, "the stalled stream closed and removed", func() bool {
			st := h.Stats()
			return st.Closes[ReasonStalled] == 1 && st.Streams == 0
		})
		<-s.Done()
		if st := h.Stats(); st.Evictions != 1 {
			t.Fatalf("stats %+v", st)
		}
		if n := logs.count(slogInfo, "stream evicted", map[string]string{"reason": "stalled", "rooms": "chat"}); n != 1 {
			t.Fatalf("%d log records of the eviction, want 1", n)
		}
		got := describe(c.awaitEnd(false))
		if len(got) == 0 || len(got) == n || !slices.Equal(got, ids(1, len(got))) {
			t.Fatalf("the stalled client received %d events (last %q), want a proper prefix of the %d", len(got), last(got), n)
		}
	})
}
