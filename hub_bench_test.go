package main

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchHub(tb testing.TB, buffer int) *hub {
	h := newHub(hubConfig{bufferSize: buffer, heartbeat: time.Hour, writeTimeout: 10 * time.Second, writers: 4},
		slog.New(slog.DiscardHandler))
	tb.Cleanup(func() { h.shutdown(tb.Context()) })
	return h
}

// BenchmarkMessageEvent is the per-message encoding cost, paid once per
// message whatever the number of subscribers.
func BenchmarkMessageEvent(b *testing.B) {
	body, _ := Message{User: "alice", UID: "alice", Text: "hello, this is a typical chat message", Time: time.Now()}.encodeBody()
	id := streamID{1732650000000, 0}
	b.ReportAllocs()
	for b.Loop() {
		messageEvent(id, body)
	}
}

// BenchmarkBroadcast queues one event to 1,000 goroutine-mode subscribers
// that drain as they would when writing to the network. Reported per
// message; allocs/op shows nothing is allocated per subscriber.
func BenchmarkBroadcast(b *testing.B) {
	const subs = 1000
	h := benchHub(b, 1024)
	var wg sync.WaitGroup
	for i := range subs {
		s, err := h.subscribe(defaultRoom, strconv.Itoa(i), false)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-s.notify:
				case <-s.done:
					h.remove(s)
					return
				}
				evs, _, _ := s.take()
				s.recycle(evs)
			}
		}()
	}
	ev := messageEvent(streamID{1, 0}, []byte(`{"user":"a","uid":"a","text":"hi","time":"2026-01-01T00:00:00Z"}`))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.broadcast(defaultRoom, ev)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
	h.shutdown(b.Context())
	wg.Wait()
}

// BenchmarkPooledDelivery is the whole taken-over path: broadcast to 200
// subscribers whose connections are loopback TCP sockets, written by the
// hub's writer pool (writev), read by draining goroutines. Every 32 messages
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
	ev := messageEvent(streamID{1, 0}, []byte(`{"user":"a","uid":"a","text":"hi","time":"2026-01-01T00:00:00Z"}`))
	var received atomic.Int64
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
		s, _ := h.subscribe(defaultRoom, strconv.Itoa(i), true)
		s.attach(srv)
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	var sent int64
	await := func() {
		want := sent * subs * int64(len(ev.wire))
		for received.Load() < want {
			if h.evictions.Load() > 0 {
				b.Fatal("a subscriber was evicted")
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.broadcast(defaultRoom, ev)
		if sent++; sent%window == 0 {
			await()
		}
	}
	await()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*subs), "ns/delivery")
	h.shutdown(b.Context())
	readers.Wait()
}
