package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"chatroom/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func startPublisher(t testing.TB, rdb redis.UniversalClient) *publisher {
	p := newPublisher(rdb, 3*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// publishKeys returns the script's keys for room with a fresh idempotency token.
func publishKeys(room string) []string {
	return []string{historyKey(room), sentKey(room, rand.Text()), seqKey(room)}
}

func publishArgs(i int) []any {
	return []any{10000, fmt.Sprintf(`{"user":"u","uid":"u","text":"m%d","time":"2026-01-01T00:00:00Z"}`, i), "bench", "PUBLISH", 600}
}

// TestPublisherConcurrent: many concurrent publishes, some batched into
// pipelines, each get a distinct ID and all are stored; after SCRIPT FLUSH
// (as after a Redis restart) publishing still works.
func TestPublisherConcurrent(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	p := startPublisher(t, rdb)
	const n = 400
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := p.publish(context.Background(), publishKeys("pubtest"), publishArgs(i))
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate ID %s", id)
		}
		seen[id] = true
	}
	if got := rdb.XLen(context.Background(), historyKey("pubtest")).Val(); got != n {
		t.Fatalf("history has %d entries, want %d", got, n)
	}
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.publish(context.Background(), publishKeys("pubtest"), publishArgs(n+i)); err != nil {
			t.Fatalf("publish after SCRIPT FLUSH: %v", err)
		}
	}

	// The same idempotency key twice: one message, one ID.
	keys := publishKeys("pubtest")
	first, err1 := p.publish(context.Background(), keys, publishArgs(1000))
	again, err2 := p.publish(context.Background(), keys, publishArgs(1000))
	if err1 != nil || err2 != nil || first != again {
		t.Fatalf("repeated publish: %q %v, %q %v; want the same ID twice", first, err1, again, err2)
	}
	if got := rdb.XLen(context.Background(), historyKey("pubtest")).Val(); got != n+4 {
		t.Fatalf("history has %d entries after a repeated publish, want %d", got, n+4)
	}
}

// BenchmarkPublish compares the batching publisher with one script call per
// publish, from 64 concurrent posters against a real redis-server.
func BenchmarkPublish(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client()
	b.Run("batched", func(b *testing.B) {
		p := startPublisher(b, rdb)
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if _, err := p.publish(context.Background(), publishKeys("bench"), publishArgs(i)); err != nil {
					b.Error(err)
				}
			}
		})
	})
	b.Run("direct", func(b *testing.B) {
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if err := publishScript.Run(context.Background(), rdb, publishKeys("bench"), publishArgs(i)...).Err(); err != nil {
					b.Error(err)
				}
			}
		})
	})
}

// TestPublishAfterStop: once the publisher has stopped (the server is
// shutting down), a publish answers at once instead of waiting forever for
// a worker that is gone.
func TestPublishAfterStop(t *testing.T) {
	rs := redistest.Start(t)
	p := newPublisher(rs.Client(), 3*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	cancel()
	<-done
	errc := make(chan error, 1)
	go func() {
		_, err := p.publish(context.Background(), publishKeys("stopped"), publishArgs(0))
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, errPublisherStopped) {
			t.Fatalf("publish after stop: %v, want errPublisherStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish after stop did not return")
	}
}
