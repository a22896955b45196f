package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// postStatus posts text with client_id and returns the status and body.
func (c *chatClient) postStatus(text, clientID string) (int, string) {
	c.t.Helper()
	v := url.Values{"message": {text}}
	if clientID != "" {
		v.Set("client_id", clientID)
	}
	resp := c.postForm("/post", v)
	return resp.StatusCode, resp.body
}

// waitConfirmed posts until one is confirmed by the replicas (the replica
// has finished its first synchronisation).
func waitConfirmed(t testing.TB, c *chatClient) {
	t.Helper()
	for i := 0; ; i++ {
		code, body := c.postStatus(fmt.Sprintf("warm-up %d", i), "")
		if code == http.StatusNoContent {
			return
		}
		if i > 100 {
			t.Fatalf("no post confirmed by the replica: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond) // waiting for another process's replication to start
	}
}

// TestWaitReplicasIdempotentHit (defect 6): with -redis-wait-replicas 1, a
// post that repeats an earlier one (same client_id) is only confirmed once
// the earlier write reached the replica: the repeat writes nothing new, so
// a WAIT after it would otherwise confirm at once. The repeat goes to a
// second instance, whose connections never wrote the first and, with its
// probes an hour apart, write nothing else meanwhile.
func TestWaitReplicasIdempotentHit(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.Args("--replicaof", "127.0.0.1", strconv.Itoa(master.Port())))
	args := []string{"-rate-posts", "0", "-redis-wait-replicas", "1", "-redis-wait-timeout", "300ms"}
	srv := startServer(t, master.URL(), args...)
	other := startServer(t, master.URL(), append(args, "-probe-interval", "1h", "-probe-timeout", "1h")...)
	alice := login(t, srv.URL, "alice")
	waitConfirmed(t, alice)
	waitConfirmed(t, alice.withBase(other.URL))

	replica.Pause()
	code, body := alice.postStatus("while the replica is stuck", "msg-1")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not confirmed") {
		t.Fatalf("post while the replica is stuck: %d %q, want 503 not confirmed", code, body)
	}
	// The user presses Enter again: same message, same client_id.
	code, body = alice.withBase(other.URL).postStatus("while the replica is stuck", "msg-1")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not confirmed") {
		t.Fatalf("repeated post while the replica is stuck: %d %q, want 503 not confirmed", code, body)
	}
	t.Logf("DEBUG repeated: %d %q", code, body)
	replica.Resume()
	if code, body = alice.postStatus("while the replica is stuck", "msg-1"); code != http.StatusNoContent {
		t.Fatalf("repeated post once the replica is back: %d %q", code, body)
	}
	if n := master.Client().XLen(t.Context(), chatHistoryKey).Val(); n < 2 {
		t.Fatalf("history has %d messages", n)
	}
}

// TestClusterWaitReplicas (defect 6): on a cluster, -redis-wait-replicas
// waits for the replica of the master that stored the message. With that
// replica stuck, posts are not confirmed (a keyless WAIT sent to some other
// master would confirm them); with it back, they are.
func TestClusterWaitReplicas(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t, 3, 1)
	srv := startServer(t, cl.URL(), "-rate-posts", "0", "-redis-wait-replicas", "1", "-redis-wait-timeout", "300ms")
	alice := login(t, srv.URL, "alice")
	waitConfirmed(t, alice)

	master := cl.MasterOf(t, chatHistoryKey)
	replicas := cl.ReplicasOf(t, master)
	if len(replicas) != 1 {
		t.Fatalf("master %s has %d replicas, want 1", master.Addr(), len(replicas))
	}
	replicas[0].Pause()
	for i := range 6 {
		code, body := alice.postStatus(fmt.Sprintf("stuck %d", i), "")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "not confirmed") {
			t.Fatalf("post %d with the slot's replica stuck: %d %q, want 503 not confirmed", i, code, body)
		}
	}
	replicas[0].Resume()
	waitConfirmed(t, alice)
}
