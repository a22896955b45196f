package fanout

import (
	"errors"
	"slices"
	"testing"
)

// TestSessionCap: a session at its cap of streams is refused another one,
// other sessions are not; a stream whose peer has closed (only a
// non-blocking peek can tell: it is half-closed, so writes would still
// succeed, and no heartbeat runs) frees its slot at the next attempt.
func TestSessionCap(t *testing.T) {
	if !peeks {
		t.Skip("no MSG_PEEK on this platform")
	}
	cfg := testConfig()
	cfg.StreamsPerSession = 2
	h, _ := startHub(t, cfg)
	ss := startStreamServer(t, h, 0)
	first, firstClient := pooled(t, h, []string{"chat"}, "alice", socketOpts{}, nil)
	ss.open(t, []string{"chat"}, "alice", socketOpts{})
	if _, err := h.Subscribe([]string{"chat"}, "alice", Pooled, nil); !errors.Is(err, ErrSessionStreams) {
		t.Fatalf("third stream of a session with a cap of 2: %v, want ErrSessionStreams", err)
	}
	bob, err := h.Subscribe([]string{"chat"}, "bob", Pooled, nil)
	if err != nil {
		t.Fatalf("another session: %v", err)
	}
	bob.Cancel()

	if err := firstClient.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var again *Subscriber
	eventually(t, never, "a stream for the session once a peer closed", func() bool {
		again, err = h.Subscribe([]string{"chat"}, "alice", Pooled, nil)
		return err == nil
	})
	defer again.Cancel()
	<-first.Done()
	firstClient.awaitEnd(false)
	if st := h.Stats(); st.Closes[ReasonClientGone] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := h.Subscribe([]string{"chat"}, "alice", Pooled, nil); !errors.Is(err, ErrSessionStreams) {
		t.Fatalf("with two live streams again: %v, want ErrSessionStreams", err)
	}
}

// TestEndSession: logging out ends exactly that session's streams, each
// told why after the events it had.
func TestEndSession(t *testing.T) {
	h, _ := startHub(t, testConfig())
	ss := startStreamServer(t, h, 0)
	_, a1 := pooled(t, h, []string{"chat"}, "alice", socketOpts{}, nil)
	_, a2 := ss.open(t, []string{"chat"}, "alice", socketOpts{})
	_, b := pooled(t, h, []string{"chat"}, "bob", socketOpts{}, nil)
	a1.start()
	a2.start()
	b.start()
	for i := 1; i <= 3; i++ {
		h.Broadcast("chat", message(i, 100))
	}
	for _, c := range []*client{a1, a2} {
		c.await("three events", func(evs []sseEvent, _ bool) bool { return len(evs) == 3 })
	}
	h.EndSession("alice")
	want := append(ids(1, 3), "disconnect:logged-out")
	for _, c := range []*client{a1, a2} {
		if got := describe(c.awaitEnd(true)); !slices.Equal(got, want) {
			t.Fatalf("alice's stream: got %q, want %q", got, want)
		}
	}
	h.Broadcast("chat", message(4, 100))
	if got := describe(b.await("four events", func(evs []sseEvent, ended bool) bool { return len(evs) >= 4 || ended })); !slices.Equal(got, ids(1, 4)) {
		t.Fatalf("bob's stream: got %q", got)
	}
	if st := h.Stats(); st.Closes[ReasonLoggedOut] != 2 || st.Streams != 1 {
		t.Fatalf("stats %+v", st)
	}
}
