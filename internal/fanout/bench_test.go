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

// benchEvent is a typical chat message event, timed as the server times
// its messages (Born), so writes report their latency.
func benchEvent() *Event {
	return &Event{ID: chat.ID{Ms: 1}, Room: chat.DefaultRoom, IDLen: len("id: 1-0\n"), Born: time.Now().UnixNano(), Wire: []byte("id: 1-0\nevent: message\ndata: " +
		`{"user":"a","uid":"a","text":"hi","time":"2026-01-01T00:00:00Z"}` + "\n\n")}
}

// benchHub is a hub whose Latency hook costs what the server's does (a
// histogram's observation is a few atomic adds).
func benchHub(b *testing.B, queueEvents int) *Hub {
	var observed atomic.Int64
	h := New(Config{QueueEvents: queueEvents, Heartbeat: time.Hour, WriteTimeout: 10 * time.Second, Writers: 4,
		Latency: func(d time.Duration) { observed.Add(int64(d)) }}, nil)
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
	pooledDelivery(b, []string{chat.DefaultRoom}, []*Event{benchEvent()}, nil)
}

// BenchmarkPooledDeliveryRooms is BenchmarkPooledDelivery for subscribers
// of three rooms each, a message broadcast to each room in turn: every
// event goes out with the stream's composite id.
func BenchmarkPooledDeliveryRooms(b *testing.B) {
	rooms, evs, start := benchRooms()
	pooledDelivery(b, rooms, evs, start)
}

// BenchmarkBroadcastRooms is BenchmarkBroadcast for subscribers of three
// rooms each, a message broadcast to each room in turn; Serve writes each
// with the stream's composite id.
func BenchmarkBroadcastRooms(b *testing.B) {
	const subs = 1000
	rooms, evs, start := benchRooms()
	h := benchHub(b, 1024)
	var served sync.WaitGroup
	for i := range subs {
		s, err := h.Subscribe(rooms, strconv.Itoa(i), Goroutine, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.SetPosition(NewPosition(rooms, start))
		served.Go(func() { s.Serve(context.Background(), discard{}) })
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		h.Broadcast(ev.Room, ev)
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
	if ev := h.Stats().Evictions; ev > 0 {
		b.Logf("%d subscribers evicted", ev)
	}
	h.Shutdown(context.Background())
	served.Wait()
}

// benchRooms are three rooms, a typical message event of each and a start
// position in each. Every ID has 13 digits, so that every composite id has
// one length.
func benchRooms() (rooms []string, evs []*Event, start map[string]chat.ID) {
	rooms = []string{chat.DefaultRoom, "dev", "ops"}
	start = map[string]chat.ID{}
	for i, room := range rooms {
		id := chat.ID{Ms: 1733050000000 + uint64(i)}
		start[room] = id
		line := "id: " + string(AppendEntry(nil, room, id)) + "\n"
		evs = append(evs, &Event{ID: id, Room: room, IDLen: len(line), Born: time.Now().UnixNano(), Wire: []byte(line + "event: message\ndata: " +
			`{"id":"` + id.String() + `","room":"` + room + `","user":"a","uid":"a","text":"hi","time":"2026-01-01T00:00:00Z"}` + "\n\n")})
	}
	return rooms, evs, start
}

// pooledDelivery broadcasts evs in turn to 200 pooled subscribers of
// rooms, each starting at start, through loopback TCP sockets.
func pooledDelivery(b *testing.B, rooms []string, evs []*Event, start map[string]chat.ID) {
	const subs = 200
	const window = 32
	h := benchHub(b, 4*window)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	// What a subscriber receives for each event.
	sizes := make([]int64, len(evs))
	pos := NewPosition(rooms, start)
	for i, ev := range evs {
		for _, part := range pos.Wire(ev) {
			sizes[i] += int64(len(part))
		}
	}
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
		s, err := h.Subscribe(rooms, strconv.Itoa(i), Pooled, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.SetPosition(NewPosition(rooms, start))
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
	var sent, want int64
	await := func() {
		for received.Load() < want*subs {
			if h.closes[ReasonSlow].Load() > 0 { // not Stats: it allocates
				b.Fatal("a subscriber was evicted")
			}
			<-arrived
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		i := int(sent) % len(evs)
		h.Broadcast(evs[i].Room, evs[i])
		want += sizes[i]
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
