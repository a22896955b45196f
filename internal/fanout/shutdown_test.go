package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// withoutPings drops the heartbeats from a described stream.
func withoutPings(evs []string) []string {
	return slices.DeleteFunc(evs, func(e string) bool { return e == "ping" })
}

// TestShutdown: Shutdown tells every stream that can take it why it ends,
// closes those that cannot (clients that stopped reading, with a write
// timeout of a minute) without waiting for them, removes them all, refuses
// new ones, and leaves no goroutine behind.
func TestShutdown(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after every other cleanup

	cfg := testConfig()
	cfg.Heartbeat = 20 * time.Millisecond
	h, _ := startHub(t, cfg)
	ss := startStreamServer(t, h, 4096)
	var healthy []*client
	for i := range 3 {
		_, c := pooled(t, h, []string{"chat"}, fmt.Sprint("p", i), socketOpts{}, nil)
		healthy = append(healthy, c.start())
		_, c = ss.open(t, []string{"chat"}, fmt.Sprint("g", i), socketOpts{})
		healthy = append(healthy, c.start())
	}
	stuckP, stuckPClient := pooled(t, h, []string{"chat"}, "stuck-p", smallBuffers(), nil)
	_, stuckGClient := ss.open(t, []string{"chat"}, "stuck-g", smallBuffers())

	const n = 100 // 400 KB: the stalled streams' sockets fill up
	for i := 1; i <= n; i++ {
		h.Broadcast("chat", message(i, 4096))
	}
	for _, c := range healthy {
		c.await("every event", func(evs []sseEvent, _ bool) bool { return lastID(evs) == ids(n, n)[0] })
	}
	eventually(t, never, "the stalled pooled stream waiting on its socket", func() bool { return stateOf(stuckP) == draining })

	ctx, cancel := context.WithTimeout(context.Background(), never)
	defer cancel()
	h.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Fatal("Shutdown waited until its deadline")
	}
	want := append(ids(1, n), "disconnect:shutdown")
	for i, c := range healthy {
		if got := withoutPings(describe(c.awaitEnd(true))); !slices.Equal(got, want) {
			t.Errorf("healthy client %d: got %d events ending %q, want %d ending with the disconnect", i, len(got), last(got), len(want))
		}
	}
	for _, c := range []*client{stuckPClient, stuckGClient} {
		c.awaitEnd(false)
	}
	st := h.Stats()
	if st.Streams != 0 || st.Closes[ReasonShutdown] != 8 || st.Draining != 0 {
		t.Fatalf("stats after shutdown %+v", st)
	}
	if _, err := h.Subscribe([]string{"chat"}, "late", Pooled, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Shutdown: %v, want ErrClosed", err)
	}
	h.Shutdown(ctx) // again: returns
}

// TestShutdownUnattached: a pooled subscriber still being set up when the
// hub shuts down is told why as soon as it is attached; Shutdown waits for
// that, and a second Shutdown waits for the first.
func TestShutdownUnattached(t *testing.T) {
	h, _ := startHub(t, testConfig())
	first := make(chan struct{})
	_, c := pooled(t, h, []string{"chat"}, "s", socketOpts{}, func(s *Subscriber, _ io.Writer) {
		h.BroadcastAll(notice("queued, never written"))
		go func() {
			defer close(first)
			h.Shutdown(context.Background())
		}()
		<-s.Done()
	})
	if got := describe(c.awaitEnd(false)); !slices.Equal(got, []string{"disconnect:shutdown"}) {
		t.Fatalf("got %q", got)
	}
	h.Shutdown(context.Background())
	// The first Shutdown's work is done (stopped is closed last); that
	// goroutine may not have run its deferred close(first) yet.
	select {
	case <-h.stopped:
	default:
		t.Fatal("the second Shutdown returned before the first had finished")
	}
	select {
	case <-first:
	case <-time.After(never):
		t.Fatal("the first Shutdown never returned")
	}
	if st := h.Stats(); st.Streams != 0 {
		t.Fatalf("stats %+v", st)
	}
}
