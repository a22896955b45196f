package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// TestWaitCoversIdempotentRepeat (defect 6): WAIT counts the replicas that
// have the calling connection's writes. A repeated publish (same token)
// finds the first one's ID and stores nothing; it must still write, so that
// its WAIT confirms only once the replica has everything up to it, the
// original message included. Two brokers of one connection each, no
// probes: the original is written on one, the repeat arrives on the other,
// whose last write the replica had confirmed.
func TestWaitCoversIdempotentRepeat(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.Args("--replicaof", "127.0.0.1", strconv.Itoa(master.Port())))
	cfg := testConfig()
	cfg.WaitReplicas, cfg.WaitTimeout = 1, 300*time.Millisecond
	var brokers [2]*Broker
	for i := range brokers {
		rdb := redis.NewClient(&redis.Options{Addr: master.Addr(), PoolSize: 1})
		t.Cleanup(func() { rdb.Close() })
		brokers[i] = New(rdb, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	publishOn := func(b *Broker, token, text string) error {
		_, err := b.Publish(context.Background(), room, token, chat.Message{User: "a", UID: "a", Text: text, Time: time.Now()})
		return err
	}
	publish := func(token, text string) error { return publishOn(brokers[0], token, text) }
	for _, b := range brokers {
		waitFor(t, 20*time.Second, "the replica to confirm a publish", func() bool {
			return publishOn(b, "warm-"+time.Now().String(), "warm") == nil
		})
	}

	stored := master.Client().XLen(context.Background(), historyKey(room)).Val()
	replica.Pause()
	if err := publishOn(brokers[1], "stuck", "while the replica is stuck"); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("publish while the replica is stuck: %v, want ErrNotReplicated", err)
	}
	if err := publish("stuck", "while the replica is stuck"); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("repeated publish while the replica is stuck: %v, want ErrNotReplicated", err)
	}
	replica.Resume()
	waitFor(t, 20*time.Second, "the repeat to be confirmed", func() bool { return publish("stuck", "while the replica is stuck") == nil })
	if n := master.Client().XLen(context.Background(), historyKey(room)).Val(); n != stored+1 {
		t.Fatalf("history has %d entries, want %d: the repeats stored nothing", n, stored+1)
	}
}
