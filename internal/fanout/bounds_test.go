package fanout

import (
	"bytes"
	"slices"
	"testing"
)

// boundCase is one bound under test: a queue that is large in one
// dimension and small in the other, and events of one size.
type boundCase struct {
	queueEvents, queueBytes int
	size                    int // of every event
	preload                 int // events queued before the stream is attached or served
}

// evictSlow opens a stream whose client never reads, queues preload events
// before the stream is written (so that most of them are still pending in
// a write, not queued, when the socket is full) and broadcasts until the
// stream is evicted. It returns how many events were accepted and what the
// client received in all.
func evictSlow(t *testing.T, h *Hub, logs *logRecorder, open opener, bc boundCase) (accepted int, raw []byte) {
	t.Helper()
	s, c := open([]string{"chat"}, "s", smallBuffers(), func(*Subscriber) {
		for i := 1; i <= bc.preload; i++ {
			h.Broadcast("chat", message(i, bc.size))
		}
	})
	// Let the writer take the preloaded events and meet the full socket:
	// from now on they are pending in a write, no longer queued.
	eventually(t, never, "the preloaded events taken by a writer that met a full socket", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.q.evs) == 0 && (s.mode == Goroutine || s.state == draining)
	})
	limit := 10 * (bc.queueBytes/bc.size + bc.queueEvents)
	for i := bc.preload + 1; h.Stats().Evictions == 0; i++ {
		if i > limit {
			t.Fatalf("not evicted after %d events of %d bytes to a client that does not read", limit, bc.size)
		}
		h.Broadcast("chat", message(i, bc.size))
	}
	<-s.Done()
	st := h.Stats()
	if st.Closes[ReasonSlow] != 1 || st.Evictions != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := logs.count(slogInfo, "stream evicted", map[string]string{"reason": "slow", "rooms": "chat"}); n != 1 {
		t.Fatalf("%d log records of the eviction, want 1", n)
	}
	c.awaitEnd(false)
	eventually(t, never, "the evicted stream removed", func() bool { return h.Stats().Streams == 0 })
	raw = c.raw()
	if i := bytes.Index(raw, []byte("event: disconnect")); i >= 0 {
		raw = raw[:i]
	}
	evs, _ := parseSSE(raw)
	if got := describe(evs); !slices.Equal(got, ids(1, len(got))) {
		t.Fatalf("the client received %d events, not a prefix of those sent (last %q)", len(got), last(got))
	}
	return int(st.Delivered), raw
}

// slack is what Goroutine mode may count as written that never reached the
// client: net/http's buffer, lost when a blocked write is cut short.
const slack = 8 << 10

// TestByteBound: a client of large events that does not read is evicted as
// slow once the bytes accepted for it and not yet written to its socket —
// queued, or pending in a write that cannot finish — would exceed
// QueueBytes, although the event bound is far away.
func TestByteBound(t *testing.T) {
	bc := boundCase{queueEvents: 1 << 20, queueBytes: 256 << 10, size: 4096, preload: 48}
	cfg := testConfig()
	cfg.QueueEvents, cfg.QueueBytes = bc.queueEvents, bc.queueBytes
	modes(t, cfg, smallBuffers(), func(t *testing.T, h *Hub, logs *logRecorder, open opener) {
		accepted, raw := evictSlow(t, h, logs, open, bc)
		backlog := accepted*bc.size - len(raw) // accepted and never written
		t.Logf("evicted after %d events; the client received %d bytes; %d were not written", accepted, len(raw), backlog)
		limit := bc.queueBytes
		if t.Name() == "TestByteBound/goroutine" {
			limit += slack
		}
		if backlog > limit || backlog < bc.queueBytes/2 {
			t.Fatalf("%d bytes accepted and not written at the eviction, want about QueueBytes (%d)", backlog, bc.queueBytes)
		}
	})
}

// TestEventBound: likewise for QueueEvents, with a byte bound far away.
func TestEventBound(t *testing.T) {
	bc := boundCase{queueEvents: 32, queueBytes: 1 << 30, size: 4096, preload: 30}
	cfg := testConfig()
	cfg.QueueEvents, cfg.QueueBytes = bc.queueEvents, bc.queueBytes
	modes(t, cfg, smallBuffers(), func(t *testing.T, h *Hub, logs *logRecorder, open opener) {
		accepted, raw := evictSlow(t, h, logs, open, bc)
		evs, _ := parseSSE(raw)
		backlog := accepted - len(evs) // accepted and not completely written
		t.Logf("evicted after %d events; the client received %d complete ones", accepted, len(evs))
		limit := bc.queueEvents
		if t.Name() == "TestEventBound/goroutine" {
			limit += slack/bc.size + 1
		}
		if backlog > limit || backlog < bc.queueEvents/2 {
			t.Fatalf("%d events accepted and not written at the eviction, want about QueueEvents (%d)", backlog, bc.queueEvents)
		}
	})
}

// TestEvictionTellsClient: a stream evicted before anything was written to
// it (its queue overflowed during the replay) gets the disconnect event,
// and only that: what was queued is not written, the client resumes from
// history.
func TestEvictionTellsClient(t *testing.T) {
	cfg := testConfig()
	cfg.QueueEvents = 4
	modes(t, cfg, socketOpts{}, func(t *testing.T, h *Hub, logs *logRecorder, open opener) {
		_, c := open([]string{"chat"}, "s", socketOpts{}, func(s *Subscriber) {
			for i := 1; i <= 5; i++ {
				h.Broadcast("chat", message(i, 100))
			}
			select {
			case <-s.Done():
			default:
				t.Error("not evicted by the fifth event with QueueEvents 4")
			}
		})
		got := describe(c.awaitEnd(false))
		if want := []string{"disconnect:slow"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		eventually(t, never, "the evicted stream removed", func() bool { return h.Stats().Streams == 0 })
		if n := logs.count(slogInfo, "stream evicted", map[string]string{"reason": "slow"}); n != 1 {
			t.Fatalf("%d log records of the eviction, want 1", n)
		}
	})
}

// TestNoFarewellAfterHalfEvent: when a pooled stream ends with an event
// partly written, nothing more is written (the client sees the cut event,
// which it drops); with no event half written, it gets the disconnect
// event instead of the unwritten ones.
func TestNoFarewellAfterHalfEvent(t *testing.T) {
	h, _ := startHub(t, testConfig())
	disconnect := string(h.cfg.Disconnect(ReasonShutdown).Wire)
	ev := message(1, 100)
	for _, tc := range []struct {
		written int // bytes of ev written before the end
		want    string
	}{
		{0, disconnect},
		{10, string(ev.Wire[:10])},
	} {
		s, c := pooled(t, h, []string{"chat"}, "s", socketOpts{}, nil)
		s.mu.Lock()
		s.state = scheduled // the test holds the write token
		s.mu.Unlock()
		s.pending.add(ev, s.pos)
		if tc.written > 0 {
			n, err := s.conn.Write(ev.Wire[:tc.written])
			if err != nil {
				t.Fatal(err)
			}
			s.pending.advance(n)
		}
		s.mu.Lock()
		s.closeLocked(ReasonShutdown)
		s.mu.Unlock()
		h.finish(s, newWritev())
		c.awaitEnd(false)
		if got := string(c.raw()); got != tc.want {
			t.Errorf("%d bytes written before the end: the client got %q, want %q", tc.written, got, tc.want)
		}
	}
}

// TestQueuedNotWrittenAfterEnd: events queued to a pooled stream that ends
// before a writer gets to them are not written; the client gets only the
// disconnect event and resumes from history.
func TestQueuedNotWrittenAfterEnd(t *testing.T) {
	h, _ := startHub(t, testConfig())
	s, c := pooled(t, h, []string{"chat"}, "s", socketOpts{}, nil)
	s.mu.Lock()
	s.state = scheduled // the test holds the write token: the writers leave s alone
	s.mu.Unlock()
	for i := 1; i <= 3; i++ {
		h.Broadcast("chat", message(i, 100))
	}
	// Ended as close does it, but before its interrupt (a write deadline in
	// the past) lands: the writer must not write the queue in that window.
	s.mu.Lock()
	s.closeLocked(ReasonLoggedOut)
	s.mu.Unlock()
	h.runq.push(s) // hand the token to the writers
	if got := describe(c.awaitEnd(false)); !slices.Equal(got, []string{"disconnect:logged-out"}) {
		t.Fatalf("got %q, want only the disconnect event", got)
	}
}
