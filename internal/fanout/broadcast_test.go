package fanout

import (
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"chatroom/internal/chat"
)

// TestBroadcastOrderAndCompleteness: many streams of both modes, all
// reading, get every event of their room exactly once and in order, and
// every BroadcastAll event in its place; a stream of another room gets only
// the latter.
func TestBroadcastOrderAndCompleteness(t *testing.T) {
	cfg := testConfig()
	h, _ := startHub(t, cfg)
	ss := startStreamServer(t, h, 0)
	var clients []*client
	for i := range 8 {
		_, c := pooled(t, h, []string{"chat"}, fmt.Sprint("p", i), socketOpts{}, nil)
		clients = append(clients, c.start())
		_, c = ss.open(t, []string{"chat"}, fmt.Sprint("g", i), socketOpts{})
		clients = append(clients, c.start())
	}
	_, otherP := pooled(t, h, []string{"other"}, "op", socketOpts{}, nil)
	_, otherG := ss.open(t, []string{"other"}, "og", socketOpts{})
	otherP.start()
	otherG.start()

	const n = 2000
	var want, wantOther []string
	for i := 1; i <= n; i++ {
		h.Broadcast("chat", message(i, 50+i%5*300)) // 50 B to 1.25 KB
		want = append(want, ids(i, i)...)
		if i%500 == 0 {
			h.BroadcastAll(notice(fmt.Sprint(i)))
			want = append(want, "notice:"+fmt.Sprint(i))
			wantOther = append(wantOther, "notice:"+fmt.Sprint(i))
		}
	}
	for i, c := range clients {
		got := describe(c.awaitWithin(time.Minute, fmt.Sprintf("all %d events", len(want)), func(evs []sseEvent, ended bool) bool {
			return len(evs) >= len(want) || ended
		}))
		if !slices.Equal(got, want) {
			t.Fatalf("client %d: got %d events, want %d in order; first difference at %d", i, len(got), len(want), firstDiff(got, want))
		}
	}
	for _, c := range []*client{otherP, otherG} {
		got := describe(c.await("the notices", func(evs []sseEvent, ended bool) bool { return len(evs) >= len(wantOther) || ended }))
		if !slices.Equal(got, wantOther) {
			t.Fatalf("other room: got %q, want %q", got, wantOther)
		}
	}
	st := h.Stats()
	if st.Evictions != 0 || st.Streams != 18 || st.Pooled != 9 || st.Goroutine != 9 {
		t.Fatalf("stats %+v", st)
	}
	if wantDelivered := int64(16*len(want) + 2*len(wantOther)); st.Delivered != wantDelivered {
		t.Fatalf("delivered %d, want %d", st.Delivered, wantDelivered)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSkipUpTo: after a replay up to an ID, the queued events it covered
// and any later one it covers are dropped, exactly those; events without
// an ID are kept in their place.
func TestSkipUpTo(t *testing.T) {
	modes(t, testConfig(), socketOpts{}, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		_, c := open([]string{"chat"}, "s", socketOpts{}, func(s *Subscriber) {
			// Broadcast while the "replay" runs.
			for i := 1; i <= 10; i++ {
				h.Broadcast("chat", message(i, 100))
				if i == 3 || i == 8 {
					h.Broadcast("chat", notice(fmt.Sprint(i)))
				}
			}
			s.SkipUpTo(chat.DefaultRoom, message(6, 0).ID)
		})
		c.start()
		h.Broadcast("chat", message(5, 100)) // covered by the replay, though late
		h.Broadcast("chat", message(11, 100))
		h.Broadcast("chat", notice("end"))
		want := []string{"notice:3"}
		want = append(want, ids(7, 8)...)
		want = append(want, "notice:8")
		want = append(want, ids(9, 11)...)
		want = append(want, "notice:end")
		got := describe(c.await("the last notice", func(evs []sseEvent, _ bool) bool {
			return slices.Contains(describe(evs), "notice:end")
		}))
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		// Queued before SkipUpTo: 12; after it: 11 and the notice, not 5.
		if st := h.Stats(); st.Delivered != 14 {
			t.Fatalf("delivered %d, want 14", st.Delivered)
		}
	})
}

// TestDegradedStatus: a change of state reaches every stream once, in its
// place among the events; a stream opened while degraded starts with the
// status; setting the same state again sends nothing.
func TestDegradedStatus(t *testing.T) {
	modes(t, testConfig(), socketOpts{}, func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		_, before := open([]string{"chat"}, "a", socketOpts{}, nil)
		before.start()
		h.SetDegraded(true)
		h.SetDegraded(true)
		_, during := open([]string{"chat"}, "b", socketOpts{}, nil)
		during.start()
		h.Broadcast("chat", message(1, 100))
		h.SetDegraded(false)
		want := []string{"status:degraded", "1-0", "status:ok"}
		for _, c := range []*client{before, during} {
			got := describe(c.await("the status ok", func(evs []sseEvent, _ bool) bool {
				return slices.Contains(describe(evs), "status:ok")
			}))
			if !slices.Equal(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	})
}

// TestAttachRefusesNonSocket: Attach takes only a socket it can write
// without blocking, only for a pooled subscriber, only once; a refused
// connection is left to the caller, and Cancel removes the subscriber.
func TestAttachRefusesNonSocket(t *testing.T) {
	h, _ := startHub(t, testConfig())
	s, err := h.Subscribe([]string{"chat"}, "s", Pooled, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := s.Attach(a); err == nil {
		t.Fatal("Attach took a net.Pipe")
	}
	go a.Write([]byte("still mine"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatalf("the refused connection was closed or used: %v", err)
	}
	s.Cancel()
	if st := h.Stats(); st.Streams != 0 {
		t.Fatalf("stats after Cancel %+v", st)
	}

	g, err := h.Subscribe([]string{"chat"}, "s", Goroutine, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Cancel()
	_, c := pooled(t, h, []string{"chat"}, "s", socketOpts{}, nil)
	if err := g.Attach(c.conn); err == nil {
		t.Fatal("Attach took a connection for a Goroutine subscriber")
	}
	p, _ := pooled(t, h, []string{"chat"}, "s2", socketOpts{}, nil)
	if err := p.Attach(c.conn); err == nil {
		t.Fatal("a second Attach succeeded")
	}
}
