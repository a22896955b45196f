package fanout

import (
	"slices"
	"testing"
	"time"
)

// TestPingReachesStreams: every Heartbeat, each stream gets Ping.
func TestPingReachesStreams(t *testing.T) {
	cfg := testConfig()
	cfg.Heartbeat = 20 * time.Millisecond
	modes(t, cfg, socketOpts{}, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		_, c := open([]string{"chat"}, "s", socketOpts{}, nil)
		c.start().await("two pings", func(evs []sseEvent, _ bool) bool {
			return len(evs) >= 2 && slices.Equal(describe(evs)[:2], []string{"ping", "ping"})
		})
	})
}

// TestClosedPeerNoticedAtHeartbeat: a pooled stream whose peer closed its
// side is closed at the next heartbeat. The peer only half-closes and keeps
// reading, so every write still succeeds: only the peek can tell.
func TestClosedPeerNoticedAtHeartbeat(t *testing.T) {
	if !peeks {
		t.Skip("no MSG_PEEK on this platform")
	}
	cfg := testConfig()
	cfg.Heartbeat = 20 * time.Millisecond
	h, _ := startHub(t, cfg)
	s, c := pooled(t, h, []string{"chat"}, "s", socketOpts{}, nil)
	c.start()
	if err := c.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(never):
		t.Fatal("the stream whose peer closed was not closed")
	}
	c.awaitEnd(true)
	eventually(t, never, "the stream removed", func() bool { return h.Stats().Streams == 0 })
	if st := h.Stats(); st.Closes[ReasonClientGone] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGoroutineClientGone: a Goroutine stream ends when its request's
// context does (net/http noticed the client close), without a write to
// fail: no heartbeat runs.
func TestGoroutineClientGone(t *testing.T) {
	h, _ := startHub(t, testConfig())
	ss := startStreamServer(t, h, 0)
	s, c := ss.open(t, []string{"chat"}, "s", socketOpts{})
	c.conn.Close()
	select {
	case <-s.Done():
	case <-time.After(never):
		t.Fatal("the stream did not end when its client closed")
	}
	eventually(t, never, "the stream removed", func() bool { return h.Stats().Streams == 0 })
	if st := h.Stats(); st.Closes[ReasonClientGone] != 1 {
		t.Fatalf("stats %+v", st)
	}
}
