package presence

import (
	"context"
	"slices"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// count returns how many of h are kind for uid.
func count(h []heard, kind, uid string) int {
	n := 0
	for _, a := range h {
		if a.Kind == kind && a.UID == uid {
			n++
		}
	}
	return n
}

// TestCrash: instance a dies without a word (its Run stops, nothing is
// departed). x reconnects to b at once; y never comes back. y's leave is
// announced within TTL + Refresh of the crash, exactly once although b and
// c both sweep, and not at the crash itself; x is neither left nor joined
// again.
func TestCrash(t *testing.T) {
	rs := redistest.Start(t)
	l := listen(t, rs.Client(), false, "dev")
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr()), cfg)
	b := startInstance(t, newClient(t, rs.Addr()), testCfg("b"))
	c := startInstance(t, newClient(t, rs.Addr()), testCfg("c"))

	a.Arrive("dev", "x", "X")
	a.Arrive("dev", "y", "Y")
	b.Arrive("dev", "z", "Z")
	c.Arrive("dev", "w", "W")
	l.awaitN(4)

	a.stop()
	crashed := time.Now()
	b.Arrive("dev", "x", "X")

	h := l.await(cfg.TTL+cfg.Refresh+5*time.Second, "y's leave", func(h []heard) bool { return count(h, "leave", "y") > 0 })
	left := h[slices.IndexFunc(h, func(a heard) bool { return a.Kind == "leave" })].at.Sub(crashed)
	// a refreshed y at most one Refresh before the crash; b and c sweep
	// every Refresh. The slack is scheduling under -race.
	const slack = 300 * time.Millisecond
	if left < cfg.TTL-cfg.Refresh-slack || left > cfg.TTL+cfg.Refresh+slack {
		t.Fatalf("y's leave heard %v after the crash, want within [TTL-Refresh, TTL+Refresh] = [%v, %v]",
			left, cfg.TTL-cfg.Refresh, cfg.TTL+cfg.Refresh)
	}

	// Both survivors sweep twice more: still one leave.
	sb, sc := b.Stats().Sweeps, c.Stats().Sweeps
	waitFor(t, 10*time.Second, "two more sweeps by b and c", func() bool {
		return b.Stats().Sweeps >= sb+2 && c.Stats().Sweeps >= sc+2
	})
	h = l.fence("dev")
	for _, uid := range []string{"x", "y", "z", "w"} {
		if count(h, "join", uid) != 1 {
			t.Fatalf("heard [%s], want one join of %s", kinds(h), uid)
		}
	}
	if len(h) != 5 || count(h, "leave", "y") != 1 {
		t.Fatalf("heard [%s], want the 4 joins and one leave of y", kinds(h))
	}
	if swept := b.Stats().Swept + c.Stats().Swept; swept != 1 {
		t.Fatalf("b and c swept %d people, want 1", swept)
	}

	members, n, err := b.Online(context.Background(), "dev")
	wantMembers := []Member{{User: "W", UID: "w"}, {User: "X", UID: "x"}, {User: "Z", UID: "z"}}
	if err != nil || n != 3 || !slices.Equal(members, wantMembers) {
		t.Fatalf("online after the crash: %v, %d, %v; want %v, 3", members, n, err, wantMembers)
	}
	// a's holder of x is dead and pruned by b's refreshes.
	waitFor(t, 10*time.Second, "a's holder of x pruned", func() bool {
		return rs.Client().ZScore(context.Background(), holdersKey("dev"), "x\na").Err() != nil
	})
}

// TestSweepSparesALiveHolder: an entry whose expiry passed while an
// instance that holds it is still alive (its refresh is late) is not
// swept: the holder's liveness bounds it.
func TestSweepSparesALiveHolder(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	ctx := context.Background()
	l := listen(t, rdb, false, "dev")
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Instance "late" holds v, alive for 5 s more; v's expiry passed.
	rdb.ZAdd(ctx, onlineKey("dev"), redisZ(float64(now.UnixMilli()-100), "v"))
	rdb.HSet(ctx, namesKey("dev"), "v", "V")
	rdb.ZAdd(ctx, holdersKey("dev"), redisZ(0, "v\nlate"))
	rdb.Set(ctx, instKey("dev", "late"), "1", 5*time.Second)

	b := startInstance(t, newClient(t, rs.Addr()), testCfg("b"))
	b.Arrive("dev", "z", "Z")
	want(t, l.awaitN(1), "join dev/z")
	s := b.Stats().Sweeps
	waitFor(t, 10*time.Second, "two sweeps by b", func() bool { return b.Stats().Sweeps >= s+2 })
	want(t, l.fence("dev"), "join dev/z")
	members, n, err := b.Online(ctx, "dev")
	if err != nil || n != 2 || !slices.Equal(members, []Member{{User: "V", UID: "v"}, {User: "Z", UID: "z"}}) {
		t.Fatalf("online: %v, %d, %v; want V and Z", members, n, err)
	}
}
