package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// runBroker runs b (subscription and publisher) until the test ends.
func runBroker(t testing.TB, b *Broker, sink Sink) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx, sink) })
	wg.Go(func() { b.RunPublisher(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func publishIn(t testing.TB, b *Broker, room, text string) chat.Message {
	t.Helper()
	m, err := b.Publish(context.Background(), room, "tok-"+room+"-"+text, chat.Message{User: "alice", UID: "alice", Text: text, Time: time.Now()})
	if err != nil {
		t.Fatalf("publish %q in %s: %v", text, room, err)
	}
	return m
}

// byRoom returns the texts the sink got, per room, in delivery order.
func (r *recorder) byRoom() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string)
	for _, m := range r.msgs {
		out[m.Room] = append(out[m.Room], m.Text)
	}
	return out
}

func (r *recorder) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; sink has %v", what, r.byRoom())
		}
	}
}

// numsub returns how many subscribers Redis counts on room's channel.
func numsub(t testing.TB, rdb redis.Cmdable, room string) int64 {
	n, err := rdb.PubSubNumSub(context.Background(), channel(room)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[channel(room)]
}

// Each room's messages reach the sink with their room, in order, and a
// room nobody acquired is not listened to at all.
func TestRoomsDeliverSeparately(t *testing.T) {
	rs := redistest.Start(t)
	b := New(rs.Client(), testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink := newRecorder()
	runBroker(t, b, sink)
	release, err := b.Acquire(context.Background(), "dev", "ops")
	if err != nil {
		t.Fatal(err)
	}
	defer release.Release()
	waitFor(t, 10*time.Second, "the broker to be ready", b.Ready)
	for i := range 5 {
		publishIn(t, b, "dev", fmt.Sprint("d", i))
		publishIn(t, b, "ops", fmt.Sprint("o", i))
		publishIn(t, b, "elsewhere", fmt.Sprint("e", i))
	}
	want := map[string][]string{"dev": {"d0", "d1", "d2", "d3", "d4"}, "ops": {"o0", "o1", "o2", "o3", "o4"}}
	sink.await(t, "both rooms' messages", func() bool {
		got := sink.byRoom()
		return slices.Equal(got["dev"], want["dev"]) && slices.Equal(got["ops"], want["ops"])
	})
	if got := sink.byRoom(); len(got) != 2 {
		t.Fatalf("sink got rooms %v, want only dev and ops", got)
	}
	if n := numsub(t, rs.Client(), "elsewhere"); n != 0 {
		t.Fatalf("subscribed to a room nobody wants: NUMSUB %d", n)
	}
}

// A room's delivery starts at the newest message when it was Acquired:
// what is published before the subscription is confirmed comes from the
// fill, so nothing is lost between a stream's Acquire and its replay.
func TestAcquireStartsAtNewest(t *testing.T) {
	rs := redistest.Start(t)
	b := New(rs.Client(), testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	pubCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go b.RunPublisher(pubCtx)
	publishIn(t, b, "dev", "before")
	release, err := b.Acquire(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer release.Release()
	// Published after Acquire, before the subscription exists at all.
	publishIn(t, b, "dev", "after1")
	publishIn(t, b, "dev", "after2")
	sink := newRecorder()
	runSub, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(runSub, sink) }()
	defer func() { cancel(); <-done }()
	// No live message follows (its sequence jump would fill the gap
	// anyway): the subscription's own fill must deliver them.
	sink.await(t, "after1, after2", func() bool { return len(sink.byRoom()["dev"]) >= 2 })
	if got := sink.byRoom()["dev"]; !slices.Equal(got, []string{"after1", "after2"}) {
		t.Fatalf("dev got %q, want after1 after2", got)
	}
}

// The subscription follows local interest: subscribed while a holder
// exists, still during the linger, and unsubscribed once it has passed;
// a holder back within the linger keeps the room's position.
func TestInterestLinger(t *testing.T) {
	rs := redistest.Start(t)
	cfg := testConfig()
	cfg.Linger = 300 * time.Millisecond
	b := New(rs.Client(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink := newRecorder()
	runBroker(t, b, sink)
	rdb := rs.Client()
	release, err := b.Acquire(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dev subscribed", func() bool { return numsub(t, rdb, "dev") == 1 })
	release.Release()
	release.Release() // a second call does nothing
	waitFor(t, 10*time.Second, "dev unsubscribed after the linger", func() bool { return numsub(t, rdb, "dev") == 0 })
	if b.Rooms() != 0 {
		t.Fatalf("broker still lists %d rooms", b.Rooms())
	}

	// Back within the linger: no unsubscribe, and what was published
	// meanwhile is delivered.
	cfg.Linger = time.Hour
	b2 := New(rdb, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink2 := newRecorder()
	runBroker(t, b2, sink2)
	r1, err := b2.Acquire(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "ops subscribed", func() bool { return numsub(t, rdb, "ops") == 1 })
	r1.Release()
	publishIn(t, b2, "ops", "meanwhile")
	r2, err := b2.Acquire(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Release()
	sink2.await(t, "the message published while nobody held ops", func() bool { return len(sink2.byRoom()["ops"]) == 1 })
	if n := numsub(t, rdb, "ops"); n != 1 {
		t.Fatalf("ops NUMSUB %d during the linger, want 1", n)
	}
}

// Signals on a room channel reach the sink only when they are well formed
// and name that room and a real user; anything else is skipped and counted.
func TestSignals(t *testing.T) {
	fx := start(t, testConfig())
	ctx := context.Background()
	forged := []string{
		`typing:{"kind":"typing","room":"other","user":"bob","uid":"bob"}`,  // another room
		`typing:{"kind":"typing","room":"chat","user":"Bob","uid":"alice"}`, // uid not the name's
		`typing:{"kind":"join","room":"chat","user":"bob","uid":"bob"}`,     // kind does not match the prefix
		`presence:{"kind":"typing","room":"chat","user":"bob","uid":"bob"}`,
		`typing:{"kind":"typing","room":"chat","user":"b\u202eob","uid":"b\u202eob"}`,
		`typing:not json`,
		`presence:{"kind":"explode","room":"chat","user":"bob","uid":"bob"}`,
	}
	for _, p := range forged {
		if err := fx.rdb.Publish(ctx, channel(room), p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.b.PublishSignal(ctx, chat.Signal{Kind: chat.SignalTyping, Room: room, User: "Bob", UID: "bob"}); err != nil {
		t.Fatal(err)
	}
	fx.sink.await(t, "the real signal", func() bool {
		fx.sink.mu.Lock()
		defer fx.sink.mu.Unlock()
		return len(fx.sink.signals) > 0
	})
	fx.sink.mu.Lock()
	got := slices.Clone(fx.sink.signals)
	fx.sink.mu.Unlock()
	if len(got) != 1 || got[0] != (chat.Signal{Kind: chat.SignalTyping, Room: room, User: "Bob", UID: "bob"}) {
		t.Fatalf("signals %+v, want only Bob's typing", got)
	}
	if st := fx.b.Stats(); st.Malformed != int64(len(forged)) || st.Signals != 1 {
		t.Fatalf("stats %+v: want %d malformed, 1 signal", st, len(forged))
	}
}

// In a cluster, rooms hash to different slots on different masters: one
// sharded subscription per master carries them, and each room's messages
// reach its room only.
func TestClusterRoomsAcrossSlots(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cfg := testConfig()
	cfg.Sharded = true
	b := New(cl.Client(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink := newRecorder()
	runBroker(t, b, sink)
	// Rooms on three different masters.
	var rooms []string
	masters := map[string]bool{}
	for i := 0; len(rooms) < 3 && i < 1000; i++ {
		r := fmt.Sprint("r", i)
		m := cl.MasterOf(t, channel(r)).Addr()
		if !masters[m] {
			masters[m] = true
			rooms = append(rooms, r)
		}
	}
	if len(rooms) != 3 {
		t.Fatalf("found rooms on %d masters only", len(rooms))
	}
	release, err := b.Acquire(context.Background(), rooms...)
	if err != nil {
		t.Fatal(err)
	}
	defer release.Release()
	waitFor(t, 15*time.Second, "the broker to be ready", b.Ready)
	for i := range 3 {
		for _, r := range rooms {
			publishIn(t, b, r, fmt.Sprint(r, "-", i))
		}
	}
	sink.await(t, "every room's messages", func() bool {
		got := sink.byRoom()
		for _, r := range rooms {
			if len(got[r]) < 3 {
				return false
			}
		}
		return true
	})
	for _, r := range rooms {
		want := []string{r + "-0", r + "-1", r + "-2"}
		if got := sink.byRoom()[r]; !slices.Equal(got, want) {
			t.Fatalf("room %s got %q, want %q", r, got, want)
		}
		n, err := cl.MasterOf(t, channel(r)).Client().PubSubShardNumSub(context.Background(), channel(r)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[channel(r)] != 1 {
			t.Fatalf("room %s: SHARDNUMSUB %d on its master, want 1", r, n[channel(r)])
		}
	}
}

// A user's rooms: joined once, capped, left, listed in position order;
// every key expires.
func TestJoinedRooms(t *testing.T) {
	rs := redistest.Start(t)
	b := New(rs.Client(), testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	for _, r := range []string{"ops", "chat", "dev"} {
		if joined, err := b.Join(ctx, "alice", r, 3); err != nil || !joined {
			t.Fatalf("join %s: %v %v", r, joined, err)
		}
	}
	if joined, err := b.Join(ctx, "alice", "dev", 3); err != nil || joined {
		t.Fatalf("second join of dev: joined %v, %v", joined, err)
	}
	if _, err := b.Join(ctx, "alice", "four", 3); err != ErrTooManyRooms {
		t.Fatalf("join beyond the cap: %v, want ErrTooManyRooms", err)
	}
	got, err := b.Joined(ctx, "alice", 20)
	if err != nil || !slices.Equal(got, []string{"chat", "dev", "ops"}) {
		t.Fatalf("Joined = %v, %v", got, err)
	}
	if err := b.Leave(ctx, "alice", "dev"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Joined(ctx, "alice", 20); !slices.Equal(got, []string{"chat", "ops"}) {
		t.Fatalf("after leaving dev: %v", got)
	}
	if ttl := rs.Client().TTL(ctx, joinedKey("alice")).Val(); ttl <= 0 {
		t.Fatalf("joined rooms key TTL %v: it must expire", ttl)
	}
	if _, err := b.Join(ctx, "alice", "Bad Room", 3); err == nil {
		t.Fatal("joined an invalid room name")
	}
}

// The active list: newest first, bounded, refreshed by Touch.
func TestActiveRooms(t *testing.T) {
	rs := redistest.Start(t)
	b := New(rs.Client(), testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	for _, r := range []string{"a", "b", "c"} {
		if err := b.Touch(ctx, r); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct millisecond scores, not synchronisation
	}
	got, err := b.Active(ctx, 2)
	if err != nil || len(got) != 2 || got[0].Room != "c" || got[1].Room != "b" {
		t.Fatalf("Active(2) = %+v, %v; want c, b", got, err)
	}
	for i := range activeKept + 10 {
		rs.Client().ZAdd(ctx, activeKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: fmt.Sprint("r", i)})
	}
	b.touched = map[string]time.Time{}
	if err := b.Touch(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := rs.Client().ZCard(ctx, activeKey).Val(); n > activeKept {
		t.Fatalf("active list holds %d rooms, cap %d", n, activeKept)
	}
}

// A room other than the default one expires after its last message; the
// default room never does.
func TestRoomTTL(t *testing.T) {
	rs := redistest.Start(t)
	cfg := testConfig()
	cfg.RoomTTL = time.Hour
	b := New(rs.Client(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.RunPublisher(ctx)
	publishIn(t, b, "dev", "x")
	publishIn(t, b, chat.DefaultRoom, "y")
	for _, k := range []string{historyKey("dev"), seqKey("dev")} {
		if ttl := rs.Client().TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s TTL %v, want up to an hour", k, ttl)
		}
	}
	for _, k := range []string{historyKey(chat.DefaultRoom), seqKey(chat.DefaultRoom)} {
		if ttl := rs.Client().TTL(ctx, k).Val(); ttl != -1 {
			t.Errorf("%s TTL %v, want none", k, ttl)
		}
	}
}
