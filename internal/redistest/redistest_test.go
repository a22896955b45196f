package redistest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t, AppendOnlyAlways())
	ctx := context.Background()
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("Addr() = %q", addr)
	}
	if want := "redis://" + addr + "/0"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Kill()
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("port still accepts connections after Kill")
	}

	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if got, err := s.Client().Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after Kill+Restart GET k = %q, %v; want \"v\"", got, err)
	}

	// A graceful Stop then Restart keeps the data too.
	s.Stop()
	s.Restart()
	if got, err := s.Client().Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after Stop+Restart GET k = %q, %v; want \"v\"", got, err)
	}
}

func TestStartDefaultsDoNotPersist(t *testing.T) {
	t.Parallel()
	s := Start(t, Args("--maxmemory", "10mb"))
	ctx := context.Background()
	cfg, err := s.Client().ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"save": "", "appendonly": "no", "maxmemory": "10485760"} {
		if cfg[k] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", k, cfg[k], want)
		}
	}
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	s.Restart()
	if err := s.Client().Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET k after restart without persistence: %v, want redis.Nil", err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	ctx := context.Background()
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs() = %v", c.Addrs())
	}
	if want := "redis+cluster://" + strings.Join(c.Addrs(), ","); c.URL() != want {
		t.Fatalf("URL() = %q, want %q", c.URL(), want)
	}
	masters := map[string]bool{}
	for i := range 20 {
		key := fmt.Sprintf("key-%d", i)
		if err := c.Client().Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		got, err := c.Client().Get(ctx, key).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
		m, err := c.Client().MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("20 keys all landed on %v; want several masters", masters)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t)
	if want := "redis+sentinel://" + s.SentinelAddr() + "/mymaster"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	ctx := context.Background()
	if err := s.Master().Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT makes sure the replica has the write before the master dies.
	if n, err := s.Master().Client().Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 5000 = %d, %v", n, err)
	}
	start := time.Now()
	s.KillMaster()
	if err := s.WaitFailover(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover took %v", time.Since(start).Round(time.Millisecond))

	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName(),
		SentinelAddrs: []string{s.SentinelAddr()},
	})
	defer fc.Close()
	if got, err := fc.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k through the new master = %q, %v", got, err)
	}
	// The promoted replica accepts writes once it has a replica again
	// (min-replicas-to-write 1): the old master, restarted, is demoted —
	// when sentinel next reads its INFO, up to 10 s later.
	s.Master().Restart()
	err := poll(30*time.Second, func() (bool, error) {
		return fc.Set(ctx, "k2", "v2", 0).Err() == nil, nil
	})
	if err != nil {
		t.Fatalf("SET on the new master: %v", err)
	}
}
