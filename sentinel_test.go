package main

import (
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestSentinelFailover: the chat runs against Redis Sentinel (one master,
// one replica) with -redis-wait-replicas 1, so a POST is answered 204 only
// once the replica has the message. The master is killed mid-run; once the
// replica is promoted (and the old master is back as its replica, so WAIT
// can be satisfied again) posting resumes, subscribers resume without a
// reload, and no acknowledged message is lost or duplicated.
func TestSentinelFailover(t *testing.T) {
	sn := redistest.StartSentinel(t)
	srv := startServer(t, sn.URL(), "-rate-posts", "0", "-redis-wait-replicas", "1", "-redis-wait-timeout", "500ms")

	subs := []*browserSubscriber{
		newBrowserSubscriber(t, "sub-0", srv.URL),
		newBrowserSubscriber(t, "sub-1", srv.URL),
	}
	stopSubs := startSubscribers(subs, "")
	defer stopSubs()
	waitFor(t, 10*time.Second, "streams open", func() bool { return serverCounters(t, srv).Streams == 2 })

	poster := newSequentialPoster(login(t, srv.URL, "poster"), "fo", func(int) string { return srv.URL })
	stopPoster := startPoster(poster, 5000)
	defer stopPoster()
	waitFor(t, 20*time.Second, "posts before the failover", func() bool { return poster.ackedCount() >= 30 })

	sn.KillMaster()
	t.Log("master killed")
	if err := sn.WaitFailover(30 * time.Second); err != nil {
		t.Fatalf("failover: %v", err)
	}
	t.Log("replica promoted")
	sn.Master().Restart() // sentinel turns it into the new master's replica
	before := poster.ackedCount()
	waitFor(t, 30*time.Second, "posts after the failover", func() bool { return poster.ackedCount() >= before+30 })
	waitFor(t, 20*time.Second, "/readyz 200 after the failover", func() bool { return readyzStatus(srv.URL) == 200 })

	finishDelivery(t, stopPoster, stopSubs, poster, subs)
}
