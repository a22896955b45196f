package presence

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/redistest"
)

// roomKeys returns the room's keys (KEYS: test only) with their PTTL.
func roomKeys(t *testing.T, rdb redis.Cmdable, room string) map[string]time.Duration {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, roomPrefix(room)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]time.Duration, len(keys))
	for _, k := range keys {
		out[k] = rdb.PTTL(ctx, k).Val()
	}
	return out
}

// TestKeysExpire: while people are online every presence key has a TTL;
// once they all left nothing is left behind; and the keys of a room whose
// only instance died expire by themselves.
func TestKeysExpire(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	l := listen(t, rdb, false, "dev", "ops")
	cfg := testCfg("a")
	a := startInstance(t, newClient(t, rs.Addr()), cfg)

	a.Arrive("dev", "alice", "Alice")
	a.Arrive("dev", "bob", "Bob")
	l.awaitN(2)
	keys := roomKeys(t, rdb, "dev")
	names := make([]string, 0, len(keys))
	for k, ttl := range keys {
		names = append(names, k)
		if ttl <= 0 || ttl > keyTTLFactor*cfg.TTL {
			t.Errorf("key %s has PTTL %v, want within (0, %v]", k, ttl, keyTTLFactor*cfg.TTL)
		}
	}
	slices.Sort(names)
	if want := []string{holdersKey("dev"), instKey("dev", "a"), namesKey("dev"), onlineKey("dev")}; !slices.Equal(names, want) {
		t.Fatalf("keys %v, want %v", names, want)
	}

	a.Depart("dev", "alice")
	a.Depart("dev", "bob")
	l.awaitN(4)
	// The script that announced the last leave also removed the rest.
	if keys := roomKeys(t, rdb, "dev"); len(keys) != 0 {
		t.Fatalf("keys left after everyone left: %v", keys)
	}

	a.Arrive("ops", "carol", "Carol")
	l.awaitN(5)
	a.stop() // a crash, with nobody else in the room to sweep it
	waitFor(t, keyTTLFactor*cfg.TTL+5*time.Second, "the keys of a dead room to expire", func() bool {
		return len(roomKeys(t, rdb, "ops")) == 0
	})
}
