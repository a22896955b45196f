package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds cluster creation and the wait for cluster_state:ok.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of masters, each with 0 or more replicas.
type Cluster struct {
	nodes  []*Server
	client *redis.ClusterClient
}

// StartCluster starts masters (at least 3) cluster-enabled redis-server
// nodes on free loopback ports p whose cluster bus port p+10000 is free too,
// joins them with `redis-cli --cluster create` and waits until every node
// reports cluster_state:ok with all 16384 slots assigned. Everything is
// stopped at t.Cleanup.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return StartClusterWithReplicas(t, masters, 0)
}

// StartClusterWithReplicas is StartCluster with replicas replicas per
// master (masters*(1+replicas) nodes).
func StartClusterWithReplicas(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	cli, err := lookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := &Cluster{}
	extra := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000",
		"--save", "",
		"--appendonly", "no",
	}
	nodes := masters * (1 + replicas)
	for i := range nodes {
		s, err := newServer(t, fmt.Sprintf("node%d", i), serverArgs(extra), freeClusterPort)
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := slices.Concat([]string{"--cluster", "create"}, c.Addrs(), []string{"--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes"})
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.SysProcAttr = sysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	for _, n := range c.nodes {
		var info string
		err := poll(clusterTimeout, func() (bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var err error
			if info, err = n.Client().ClusterInfo(ctx).Result(); err != nil {
				return false, nil
			}
			f := infoFields(info)
			return f["cluster_state"] == "ok" &&
				f["cluster_slots_assigned"] == "16384" &&
				f["cluster_slots_ok"] == "16384" &&
				f["cluster_known_nodes"] == fmt.Sprint(nodes), nil
		})
		if err != nil {
			t.Fatalf("redistest: cluster node %s not ready: %v\n%s", n.Addr(), err, info)
		}
	}

	c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	// Registered after the nodes' cleanups, so it runs before them.
	t.Cleanup(func() { _ = c.client.Close() })
	return c
}

// MasterOf returns the node that is master for key's slot.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	m, err := c.client.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatalf("redistest: master for %s: %v", key, err)
	}
	for _, n := range c.nodes {
		if n.Addr() == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("redistest: master %s of %s is not a node of this cluster", m.Options().Addr, key)
	return nil
}

// ReplicasOf returns the nodes replicating master, once each has finished
// its first synchronisation.
func (c *Cluster) ReplicasOf(t testing.TB, master *Server) []*Server {
	t.Helper()
	var out []*Server
	for _, n := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := n.Client().Info(ctx, "replication").Result()
		cancel()
		if err != nil {
			t.Fatalf("redistest: INFO replication of %s: %v", n.Addr(), err)
		}
		f := infoFields(info)
		if f["role"] == "slave" && f["master_port"] == fmt.Sprint(master.Port()) {
			out = append(out, n)
		}
	}
	return out
}

// Addrs returns the nodes' "127.0.0.1:port" addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the node servers, for example to Kill one.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// URL returns "redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...".
func (c *Cluster) URL() string {
	return "redis+cluster://" + strings.Join(c.Addrs(), ",")
}

// Client returns a cluster client, closed at t.Cleanup.
func (c *Cluster) Client() *redis.ClusterClient { return c.client }

// infoFields parses "key:value" lines of INFO and CLUSTER INFO replies.
func infoFields(info string) map[string]string {
	f := make(map[string]string)
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			f[k] = v
		}
	}
	return f
}
