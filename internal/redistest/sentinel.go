package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelTimeout bounds the wait for replication and sentinel discovery.
const sentinelTimeout = 20 * time.Second

const masterName = "mymaster"

// Sentinel is one master, one replica and one sentinel (quorum 1) watching
// them.
type Sentinel struct {
	master   *Server
	replica  *Server
	sentinel *Server
	client   *redis.SentinelClient
}

// StartSentinel starts a master, a replica of it (both with
// min-replicas-to-write 1) and a sentinel monitoring the master as
// "mymaster" (down-after-milliseconds 1000, failover-timeout 5000), and waits until the replica's link is up and the sentinel knows
// both the master and the replica. Everything is stopped at t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{}
	// min-replicas-to-write 1 is Redis's guard against split brain: a node
	// that is master without a connected replica (the old master restarted
	// before sentinel demotes it) refuses writes instead of accepting ones
	// that its demotion would then discard.
	base := []string{"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
		"--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"}
	var err error
	if s.master, err = newServer(t, "master", serverArgs(base), freePort); err != nil {
		t.Fatalf("redistest: sentinel master: %v", err)
	}
	replicaArgs := slices.Concat(base, []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.Port())})
	if s.replica, err = newServer(t, "replica", serverArgs(replicaArgs), freePort); err != nil {
		t.Fatalf("redistest: sentinel replica: %v", err)
	}

	var info string
	err = poll(sentinelTimeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		if info, err = s.replica.Client().Info(ctx, "replication").Result(); err != nil {
			return false, nil
		}
		return infoFields(info)["master_link_status"] == "up", nil
	})
	if err != nil {
		t.Fatalf("redistest: replica %s never linked to master %s: %v\n%s", s.replica.Addr(), s.master.Addr(), err, info)
	}

	masterPort := s.master.Port()
	sentinelArgs := func(dir string) func(port int) ([]string, error) {
		return func(port int) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, strconv.Quote(dir), masterName, masterPort, masterName, masterName, masterName)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				return nil, err
			}
			return []string{conf, "--sentinel"}, nil
		}
	}
	if s.sentinel, err = newServer(t, "sentinel", sentinelArgs, freePort); err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	s.client = redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.Addr()})
	t.Cleanup(func() { _ = s.client.Close() })

	// The sentinel must know the master and have talked to the replica
	// (master-link-status comes from the replica's own INFO), or it could
	// not promote it.
	var state string
	err = poll(sentinelTimeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m, err := s.currentMaster(ctx)
		if err != nil || m != s.master.Addr() {
			state = fmt.Sprintf("master: %q %v", m, err)
			return false, nil
		}
		replicas, err := s.client.Replicas(ctx, masterName).Result()
		if err != nil {
			state = fmt.Sprintf("replicas: %v", err)
			return false, nil
		}
		state = fmt.Sprintf("replicas: %v", replicas)
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == s.replica.Addr() &&
				r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("redistest: sentinel %s not ready: %v\n%s", s.sentinel.Addr(), err, state)
	}
	return s
}

func (s *Sentinel) currentMaster(ctx context.Context) (string, error) {
	a, err := s.client.GetMasterAddrByName(ctx, masterName).Result()
	if err != nil {
		return "", err
	}
	if len(a) != 2 {
		return "", fmt.Errorf("unexpected reply %q", a)
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// MasterName returns "mymaster".
func (s *Sentinel) MasterName() string { return masterName }

// SentinelAddr returns the sentinel's "127.0.0.1:port".
func (s *Sentinel) SentinelAddr() string { return s.sentinel.Addr() }

// MasterAddr returns the address of the initial master.
func (s *Sentinel) MasterAddr() string { return s.master.Addr() }

// ReplicaAddr returns the address of the initial replica.
func (s *Sentinel) ReplicaAddr() string { return s.replica.Addr() }

// Master returns the initial master server.
func (s *Sentinel) Master() *Server { return s.master }

// Replica returns the initial replica server.
func (s *Sentinel) Replica() *Server { return s.replica }

// KillMaster sends SIGKILL to the initial master and waits for it to exit.
func (s *Sentinel) KillMaster() { s.master.Kill() }

// WaitFailover polls the sentinel until it reports the initial replica as
// the master of "mymaster", or timeout passes.
func (s *Sentinel) WaitFailover(timeout time.Duration) error {
	var last string
	var lastErr error
	err := poll(timeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		last, lastErr = s.currentMaster(ctx)
		return lastErr == nil && last == s.replica.Addr(), nil
	})
	if err != nil {
		return fmt.Errorf("redistest: no failover to %s: %w (sentinel reports %q, %v)", s.replica.Addr(), err, last, lastErr)
	}
	return nil
}

// URL returns "redis+sentinel://127.0.0.1:sentinelport/mymaster".
func (s *Sentinel) URL() string {
	return "redis+sentinel://" + s.sentinel.Addr() + "/" + masterName
}
