package fanout

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatroom/internal/chat"
)

// benchEvent is a typical chat message event.
func benchEvent() *Event {
	return &Event{ID: chat.ID{Ms: 1}, Room: chat.DefaultRoom, IDLen: len("id: 1-0\n"), Wire: []byte("id: 1-0\nevent: message\ndata: " +
		`{"user":"a","uid":"a","text":"hi","time":"2026-01-01T00:00:00Z"}` + "\n\n")}
}

func benchHub(b *testing.B, queueEvents int) *Hub {
	h := New(Config{QueueEvents: queueEvents, Heartbeat: time.Hour, WriteTimeout: 10 * time.Second, Writers: 4}, nil)
	b.Cleanup(func() { h.Shutdown(context.Background()) })
	return h
}

// discard is a StreamWriter that writes nowhere.
type discard struct{}

func (discard) Write(p []byte) (int, error)      { return len(p), nil }
func (discard) Flush() error                     { return nil }
func (discard) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkBroadcast queues one event to 1,000 Goroutine-mode subscribers,
// each served by Serve into a writer that discards. Reported per message;
// allocs/op shows nothing is allocated per subscriber.
func BenchmarkBroadcast(b *testing.B) {
	const subs = 1000
	h := benchHub(b, 1024)
	var served sync.WaitGroup
	for i := range subs {
		s, err := h.Subscribe([]string{"chat"}, strconv.Itoa(i), Goroutine, nil)
		if err != nil {
			b.Fatal(err)
		}
		served.Go(func() { s.Serve(context.Background(), discard{}) })
	}
	ev := benchEvent()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.Broadcast("chat", ev)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
	if ev := h.Stats().Evictions; ev > 0 {
		b.Logf("%d subscribers evicted", ev)
	}
	h.Shutdown(context.Background())
	served.Wait()
}

// BenchmarkPooledDelivery is the whole pooled path: broadcast to 200
// subscribers whose connections are loopback TCP sockets, written by the
// shared writers (writev), read by draining goroutines. Every 32 messages
// it waits until all bytes arrived, so no subscriber is ever evicted.
func BenchmarkPooledDelivery(b *testing.B) {
	const subs = 200
	const window = 32
	h := benchHub(b, 4*window)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ev := benchEvent()
	var received atomic.Int64
	arrived := make(chan struct{}, 1)
	var readers sync.WaitGroup
	for i := range subs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		srv, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		s, err := h.Subscribe([]string{"chat"}, strconv.Itoa(i), Pooled, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Attach(srv); err != nil {
			b.Fatal(err)
		}
		readers.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				received.Add(int64(n))
				select {
				case arrived <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
			}
		})
	}
	var sent int64
	await := func() {
		want := sent * subs * int64(len(ev.Wire))
		for received.Load() < want {
			if h.closes[ReasonSlow].Load() > 0 { // not Stats: it allocates
				b.Fatal("a subscriber was evicted")
			}
			<-arrived
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.Broadcast("chat", ev)
		if sent++; sent%window == 0 {
			await()
		}
	}
	await()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*subs), "ns/delivery")
	h.Shutdown(context.Background())
	readers.Wait()
}
