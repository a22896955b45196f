package presence

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// TestCluster: on a 3-master cluster, with the default room and a room
// whose keys live on another master, announcements arrive by SSUBSCRIBE,
// lists are per room, a dead instance is swept in both slots, and every key
// goes away.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	ctx := context.Background()
	rooms := []string{chat.DefaultRoom}
	home := c.MasterOf(t, onlineKey(chat.DefaultRoom)).Addr()
	for i := 0; len(rooms) < 2; i++ {
		r := fmt.Sprintf("room%d", i)
		if c.MasterOf(t, onlineKey(r)).Addr() != home {
			rooms = append(rooms, r)
		}
	}
	l := listen(t, c.Client(), true, rooms...)
	newCluster := func() *redis.ClusterClient {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	cfg := func(inst string) Config {
		cfg := testCfg(inst)
		cfg.Sharded = true
		return cfg
	}
	a := startInstance(t, newCluster(), cfg("a"))
	b := startInstance(t, newCluster(), cfg("b"))
	for _, r := range rooms {
		a.Arrive(r, "alice", "Alice")
		b.Arrive(r, "bob", "Bob")
	}
	l.awaitN(4)
	for _, r := range rooms {
		members, n, err := a.Online(ctx, r)
		if want := []Member{{User: "Alice", UID: "alice"}, {User: "Bob", UID: "bob"}}; err != nil || n != 2 || !slices.Equal(members, want) {
			t.Fatalf("online in %s: %v, %d, %v; want %v", r, members, n, err, want)
		}
	}

	b.stop() // a crash: a sweeps bob out of both rooms
	l.await(10*time.Second, "bob's leaves", func(h []heard) bool { return count(h, "leave", "bob") == 2 })
	for _, r := range rooms {
		a.Depart(r, "alice")
	}
	l.await(10*time.Second, "alice's leaves", func(h []heard) bool { return count(h, "leave", "alice") == 2 })
	for _, r := range rooms {
		h := l.fence(r)
		var inRoom []heard
		for _, x := range h {
			if x.Room == r {
				inRoom = append(inRoom, x)
			}
		}
		if len(inRoom) != 4 || count(inRoom, "join", "alice") != 1 || count(inRoom, "join", "bob") != 1 ||
			inRoom[2].String() != "leave "+r+"/bob" || inRoom[3].String() != "leave "+r+"/alice" {
			t.Fatalf("heard in %s: [%s]; want the two joins, bob's leave, alice's leave", r, kinds(inRoom))
		}
	}
	for _, r := range rooms {
		master := c.MasterOf(t, onlineKey(r)).Client()
		waitFor(t, keyTTLFactor*time.Second+5*time.Second, "the keys of "+r+" to go", func() bool {
			return len(roomKeys(t, master, r)) == 0
		})
	}
}
