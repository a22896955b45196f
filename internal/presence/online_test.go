package presence

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestOnline: the list holds the people of every instance, sorted by name
// case-insensitively and capped at MaxListed, with the exact count; it
// leaves out entries whose expiry passed and includes this instance's own
// people before their claim reached Redis.
func TestOnline(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	ctx := context.Background()
	l := listen(t, rdb, false, "dev")
	// A long TTL, so that nothing expires or is swept while the test looks.
	cfg := func(inst string) Config {
		c := testCfg(inst)
		c.TTL, c.Refresh, c.MaxListed = 20*time.Second, 10*time.Second, 3
		return c
	}
	a := startInstance(t, newClient(t, rs.Addr()), cfg("a"))
	b := startInstance(t, newClient(t, rs.Addr()), cfg("b"))
	a.Arrive("dev", "bob", "bob")
	a.Arrive("dev", "alice", "Alice")
	b.Arrive("dev", "carol", "carol")
	b.Arrive("dev", "dave", "Dave")
	b.Arrive("dev", "eve", "eve")
	l.awaitN(5)

	// An entry of a dead instance, expired but not swept yet: "Aaron"
	// would sort first.
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	rdb.ZAdd(ctx, onlineKey("dev"), redisZ(float64(now.UnixMilli()-1), "aaron"))
	rdb.HSet(ctx, namesKey("dev"), "aaron", "Aaron")

	wantList := []Member{{User: "Alice", UID: "alice"}, {User: "bob", UID: "bob"}, {User: "carol", UID: "carol"}}
	for _, p := range []*instance{a, b} {
		members, n, err := p.Online(ctx, "dev")
		if err != nil || n != 5 || !slices.Equal(members, wantList) {
			t.Fatalf("online from %s: %v, %d, %v; want %v, 5", p.Instance(), members, n, err, wantList)
		}
	}

	// Instance c never ran: its person is only local, yet listed and counted.
	c := New(newClient(t, rs.Addr()), Config{Instance: "c", TTL: 20 * time.Second}, slog.New(slog.DiscardHandler))
	c.Arrive("dev", "abe", "Abe")
	members, n, err := c.Online(ctx, "dev")
	wantList = []Member{{User: "Abe", UID: "abe"}, {User: "Alice", UID: "alice"}, {User: "bob", UID: "bob"}, {User: "carol", UID: "carol"}, {User: "Dave", UID: "dave"}, {User: "eve", UID: "eve"}}
	if err != nil || n != 6 || !slices.Equal(members, wantList) {
		t.Fatalf("online from c: %v, %d, %v; want %v, 6", members, n, err, wantList)
	}
	// An empty room, and an invalid one.
	if members, n, err := a.Online(ctx, "nobody"); err != nil || n != 0 || len(members) != 0 {
		t.Fatalf("online of an empty room: %v, %d, %v", members, n, err)
	}
	if _, _, err := a.Online(ctx, "Dev}"); err == nil {
		t.Fatal("online of an invalid room: no error")
	}
}
