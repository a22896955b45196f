package presence

import (
	"context"
	"slices"
	"testing"

	"time"

	"chatroom/internal/redistest"
)

// TestTwoTabs: a person with two tabs who closes one has not left; closing
// the second is one leave, after the grace period.
func TestTwoTabs(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr()), cfg)

	a.Arrive("dev", "alice", "Alice")
	a.Arrive("dev", "alice", "Alice")
	want(t, l.awaitN(1), "join dev/alice")

	a.Depart("dev", "alice")
	first := time.Now()
	settled(t, a.Presence, first.Add(cfg.Grace))
	want(t, l.fence("dev"), "join dev/alice")

	a.Depart("dev", "alice")
	last := time.Now()
	h := l.awaitN(2)
	want(t, h, "join dev/alice", "leave dev/alice")
	if h[1].at.Before(last.Add(cfg.Grace)) {
		t.Fatalf("leave heard %v after the last tab closed, before the grace of %v ended", h[1].at.Sub(last), cfg.Grace)
	}
	want(t, l.fence("dev"), "join dev/alice", "leave dev/alice")
	if s := a.Stats(); s.Joins != 1 || s.Leaves != 1 || s.Arrivals != 2 || s.Departures != 2 {
		t.Fatalf("stats %+v, want 2 arrivals, 2 departures, 1 join, 1 leave", s)
	}
}

// TestReload: the last tab closes and a new stream of the same person
// starts within the grace (a reload, a reconnect): no leave, no second join.
func TestReload(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr()), cfg)

	a.Arrive("dev", "alice", "Alice")
	want(t, l.awaitN(1), "join dev/alice")

	a.Depart("dev", "alice")
	a.Arrive("dev", "alice", "Alice")
	reloaded := time.Now()
	settled(t, a.Presence, reloaded.Add(cfg.Grace))
	want(t, l.fence("dev"), "join dev/alice")
	if s := a.Stats(); s.Coalesced != 1 {
		t.Fatalf("stats %+v, want 1 coalesced departure", s)
	}

	a.Depart("dev", "alice")
	want(t, l.awaitN(2), "join dev/alice", "leave dev/alice")
	want(t, l.fence("dev"), "join dev/alice", "leave dev/alice")
}

// TestMove: a person's stream moves from instance a to instance b within
// the grace (a reconnect landing elsewhere): no leave, no join; b's own
// departure later is the one leave.
func TestMove(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr()), cfg)
	b := startInstance(t, newClient(t, rs.Addr()), testCfg("b"))

	a.Arrive("dev", "alice", "Alice")
	want(t, l.awaitN(1), "join dev/alice")

	a.Depart("dev", "alice")
	b.Arrive("dev", "alice", "Alice")
	moved := time.Now()
	settled(t, a.Presence, moved.Add(cfg.Grace)) // a's departure is written
	settled(t, b.Presence, moved)                // b's claim is written
	want(t, l.fence("dev"), "join dev/alice")
	members, n, err := a.Online(context.Background(), "dev")
	if err != nil || n != 1 || !slices.Equal(members, []Member{{User: "Alice", UID: "alice"}}) {
		t.Fatalf("online after the move: %v, %d, %v; want alice alone", members, n, err)
	}

	b.Depart("dev", "alice")
	want(t, l.awaitN(2), "join dev/alice", "leave dev/alice")
	want(t, l.fence("dev"), "join dev/alice", "leave dev/alice")
	if sa, sb := a.Stats(), b.Stats(); sa.Joins != 1 || sa.Leaves != 0 || sb.Joins != 0 || sb.Leaves != 1 {
		t.Fatalf("a announced %d joins, %d leaves; b %d joins, %d leaves; want a the join, b the leave",
			sa.Joins, sa.Leaves, sb.Joins, sb.Leaves)
	}
}
