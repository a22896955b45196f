package presence

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/internal/redistest"
)

// TestFailedWritesAreRetried: a claim and a departure that fail (every
// Redis call of the instance fails, as on a timeout) are sent again once
// Redis answers; the local counts survive the failures.
func TestFailedWritesAreRetried(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	f := newFaults()
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr(), f), cfg)

	f.fail.Store(true)
	a.Arrive("dev", "alice", "Alice")
	waitFor(t, 10*time.Second, "the claim to fail", func() bool { return a.Stats().Errors >= 1 })
	want(t, l.fence("dev"), "")
	f.fail.Store(false)
	want(t, l.awaitN(1), "join dev/alice")

	f.fail.Store(true)
	a.Depart("dev", "alice")
	departed := time.Now()
	settled(t, a.Presence, departed.Add(cfg.Grace))
	errs := a.Stats().Errors
	settled(t, a.Presence, time.Now()) // and one more failed attempt
	if a.Stats().Errors <= errs {
		t.Fatalf("errors %d, want more than %d: the departure was not attempted again", a.Stats().Errors, errs)
	}
	want(t, l.fence("dev"), "join dev/alice")
	f.fail.Store(false)
	want(t, l.awaitN(2), "join dev/alice", "leave dev/alice")
	want(t, l.fence("dev"), "join dev/alice", "leave dev/alice")

	// bob comes and goes while every write fails: once Redis answers, his
	// departure is written, and nobody ever hears of him.
	f.fail.Store(true)
	errs = a.Stats().Errors
	a.Arrive("dev", "bob", "Bob")
	a.Depart("dev", "bob")
	settled(t, a.Presence, time.Now().Add(cfg.Grace))
	if a.Stats().Errors <= errs {
		t.Fatal("no write failed while bob came and went")
	}
	f.fail.Store(false)
	waitFor(t, 10*time.Second, "bob forgotten", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.rooms) == 0
	})
	want(t, l.fence("dev"), "join dev/alice", "leave dev/alice")
}

// TestBackDuringDeparture: a person whose departure is being written when
// they come back is claimed again at once, not at the next refresh.
func TestBackDuringDeparture(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	f := newFaults()
	cfg := testCfg("a")
	cfg.TTL, cfg.Refresh = 40*time.Second, 20*time.Second // no refresh during the test
	a := startInstance(t, newClient(t, rs.Addr(), f), cfg)
	a.Arrive("dev", "alice", "Alice")
	want(t, l.awaitN(1), "join dev/alice")

	release := f.holdPipelines()
	t.Cleanup(release)
	a.Depart("dev", "alice")
	select {
	case <-f.held: // the departure, after the grace
	case <-time.After(10 * time.Second):
		t.Fatal("the departure never reached Redis")
	}
	a.Arrive("dev", "alice", "Alice")
	release()
	want(t, l.await(cfg.Refresh/2, "alice back", func(h []heard) bool { return len(h) == 3 }),
		"join dev/alice", "leave dev/alice", "join dev/alice")
}

// TestDepartDoesNotBlock: while Run is stuck in a Redis call, Arrive and
// Depart still return at once (Depart is called from a callback that must
// not block), and what they recorded is written once Redis answers.
func TestDepartDoesNotBlock(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	f := newFaults()
	release := f.holdPipelines()
	a := startInstance(t, newClient(t, rs.Addr(), f), testCfg("a"))
	t.Cleanup(release)

	a.Arrive("dev", "alice", "Alice")
	select {
	case <-f.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the claim never reached Redis")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			a.Arrive("dev", "bob", "Bob")
			a.Depart("dev", "bob")
			a.Depart("dev", "alice")
			a.Arrive("dev", "alice", "Alice")
			if i%100 == 0 {
				a.Arrive("ops", "carol", "Carol")
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Arrive/Depart blocked while Run was stuck in Redis")
	}
	release()
	h := l.await(10*time.Second, "alice's join", func(h []heard) bool { return count(h, "join", "alice") == 1 })
	if count(h, "leave", "alice") != 0 {
		t.Fatalf("heard [%s]: alice left", kinds(h))
	}
}

// TestChurn: three instances, four people, each person's tabs opening and
// closing on random instances at once, the grace ending now and then. Per
// person the announcements alternate join, leave, join, … and end with a
// leave once everybody is gone; the instances' counters agree with what
// was heard.
func TestChurn(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	var insts []*instance
	for _, id := range []string{"a", "b", "c"} {
		cfg := testCfg(id)
		cfg.TTL, cfg.Grace = 2*time.Second, 30*time.Millisecond
		insts = append(insts, startInstance(t, newClient(t, rs.Addr()), cfg))
	}
	people := []string{"p1", "p2", "p3", "p4"}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, uid := range people {
		for range 3 { // three tabs per person
			wg.Go(func() {
				<-start
				for range 20 {
					p := insts[rand.IntN(len(insts))]
					p.Arrive("dev", uid, uid)
					// Pauses shape the load (some longer than the
					// grace); they synchronise nothing.
					time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
					p.Depart("dev", uid)
					time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	l.await(20*time.Second, "everybody's last leave", func(h []heard) bool {
		for _, uid := range people {
			if count(h, "join", uid) == 0 || count(h, "join", uid) != count(h, "leave", uid) {
				return false
			}
		}
		return true
	})
	for _, p := range insts {
		settled(t, p.Presence, time.Now().Add(100*time.Millisecond))
	}
	h := l.fence("dev")
	var joins, leaves int64
	for _, uid := range people {
		last := "leave"
		for _, x := range h {
			if x.UID != uid {
				continue
			}
			if x.Kind == last {
				t.Fatalf("%s: two %ss in a row in [%s]", uid, x.Kind, kinds(h))
			}
			last = x.Kind
		}
		if last != "leave" {
			t.Fatalf("%s: still online at the end of [%s]", uid, kinds(h))
		}
	}
	for _, p := range insts {
		s := p.Stats()
		joins, leaves = joins+s.Joins, leaves+s.Leaves
	}
	if int(joins) != len(h)/2 || int(leaves) != len(h)/2 {
		t.Fatalf("instances announced %d joins and %d leaves, %d heard", joins, leaves, len(h))
	}
	// The point is the races: people must have left and come back.
	if len(h) <= 2*len(people) {
		t.Fatalf("only %d announcements: nobody left and came back, the test raced nothing", len(h))
	}
	t.Logf("%d announcements, %d coalesced departures", len(h), coalesced(insts))
	if keys := roomKeys(t, rs.Client(), "dev"); len(keys) != 0 {
		t.Fatalf("keys left after everyone left: %v", keys)
	}
}

func coalesced(insts []*instance) int64 {
	var n int64
	for _, p := range insts {
		n += p.Stats().Coalesced
	}
	return n
}

// TestRunLeavesNothingRunning: once Run has returned (and the client is
// closed), no goroutine of the package is left.
func TestRunLeavesNothingRunning(t *testing.T) {
	rs := redistest.Start(t)
	leaks := goleak.IgnoreCurrent()
	// Registered first, so it runs after every other cleanup (the
	// listener's, the client's).
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	l := listen(t, rs.Client(), false, "dev")
	c := newClient(t, rs.Addr())
	a := startInstance(t, c, testCfg("a"))
	a.Arrive("dev", "alice", "Alice")
	l.awaitN(1)
	a.Depart("dev", "alice") // its grace still running when Run stops
	a.stop()
	c.Close()
}
