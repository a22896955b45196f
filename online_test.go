package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatroom/internal/presence"
)

// fakeOnline counts reads and holds each until released.
type fakeOnline struct {
	reads   atomic.Int64
	started chan int64 // the number of each read as it starts
	release chan struct{}
}

func (f *fakeOnline) Arrive(string, string, string) {}
func (f *fakeOnline) Depart(string, string)         {}
func (f *fakeOnline) Online(ctx context.Context, room string) ([]presence.Member, int, error) {
	n := f.reads.Add(1)
	f.started <- n
	<-f.release
	return []presence.Member{{User: room, UID: room}}, int(n), nil
}

// Callers that arrive while a read runs share the next read, which starts
// after they asked; nobody is answered by a read that started before.
func TestOnlineReadsBatch(t *testing.T) {
	f := &fakeOnline{started: make(chan int64, 10), release: make(chan struct{})}
	o := newOnlineReads(f, 5*time.Second)
	first := make(chan int, 1)
	go func() { _, n, _ := o.Online(context.Background(), "dev"); first <- n }()
	if n := <-f.started; n != 1 {
		t.Fatalf("read %d started", n)
	}
	// Ten callers arrive while read 1 runs.
	var wg sync.WaitGroup
	got := make([]int, 10)
	for i := range got {
		wg.Go(func() { _, got[i], _ = o.Online(context.Background(), "dev") })
	}
	waitFor(t, 5*time.Second, "the callers to queue", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		rr := o.rooms["dev"]
		return rr != nil && rr.next != nil && rr.next.waiters == 10
	})
	f.release <- struct{}{}
	if n := <-first; n != 1 {
		t.Fatalf("first caller answered by read %d", n)
	}
	if n := <-f.started; n != 2 {
		t.Fatalf("read %d started second", n)
	}
	f.release <- struct{}{}
	wg.Wait()
	for i, n := range got {
		if n < 2 {
			t.Fatalf("caller %d answered by read %d, which started before it asked", i, n)
		}
	}
	if r := f.reads.Load(); r != 2 {
		t.Fatalf("%d reads for 11 callers, want 2", r)
	}
}
