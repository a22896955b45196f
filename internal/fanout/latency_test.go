package fanout

import (
	"sync"
	"testing"
	"time"
)

// latencies records what Config.Latency reports.
type latencies struct {
	mu  sync.Mutex // guards got
	got []time.Duration
}

func (l *latencies) note(d time.Duration) {
	l.mu.Lock()
	l.got = append(l.got, d)
	l.mu.Unlock()
}

func (l *latencies) all() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.got...)
}

// timed is message n, born at born.
func timed(n int, size int, born time.Time) *Event {
	ev := message(n, size)
	ev.Born = born.UnixNano()
	return ev
}

// TestLatency: a write that carries timed events reports, once, the time
// from the oldest one's birth to the end of the write; untimed events
// report nothing; a write the socket cannot take at once reports when its
// last byte is written, not at its first.
func TestLatency(t *testing.T) {
	var lat latencies
	cfg := testConfig()
	cfg.Latency = lat.note
	modes(t, cfg, smallBuffers(), func(t *testing.T, h *Hub, _ *logRecorder, open opener) {
		lat.mu.Lock()
		lat.got = nil
		lat.mu.Unlock()
		_, c := open([]string{"chat"}, "s", socketOpts{}, nil)
		c.start()
		h.Broadcast("chat", notice("untimed"))
		c.await("the untimed notice", func(evs []sseEvent, ended bool) bool { return len(evs) >= 1 || ended })
		born := time.Now().Add(-200 * time.Millisecond)
		h.Broadcast("chat", timed(1, 100, born))
		c.await("the timed message", func(evs []sseEvent, ended bool) bool { return len(evs) >= 2 || ended })
		eventually(t, never, "its latency reported", func() bool { return len(lat.all()) >= 1 })
		got := lat.all()
		if len(got) != 1 || got[0] < 200*time.Millisecond || got[0] > 200*time.Millisecond+never {
			t.Fatalf("latencies %v, want one of about 200ms (none for the notice)", got)
		}

		// A client that does not read yet: a large timed event fills its
		// socket, and its write ends only once the client reads.
		s, slow := open([]string{"other"}, "t", smallBuffers(), nil)
		lat.mu.Lock()
		lat.got = nil
		lat.mu.Unlock()
		born = time.Now()
		h.Broadcast("other", timed(2, 512<<10, born))
		eventually(t, never, "the events taken by a writer that met a full socket", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.q.evs) == 0 && (s.mode == Goroutine || s.state == draining)
		})
		// A report at the first, partial write came before this point, so
		// it would be shorter than readFrom.
		readFrom := time.Since(born)
		slow.start()
		slow.await("the message", func(evs []sseEvent, ended bool) bool { return len(evs) >= 1 || ended })
		eventually(t, never, "the large write's latency reported", func() bool { return len(lat.all()) >= 1 })
		got = lat.all()
		if got[0] < readFrom {
			t.Fatalf("latency %v: reported before the client read (it started after %v)", got[0], readFrom)
		}
	})
}
