package main

import (
	"os"
	"strings"
	"testing"

	"chatroom/internal/redistest"
)

// redisConfArgs turns the active lines of deploy/redis/redis.conf into
// redis-server arguments ("--name value ...").
func redisConfArgs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("deploy/redis/redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out[f[0]] = f[1:]
	}
	return out
}

// TestDeployRedisConfig: redis-server accepts the shipped Redis settings,
// they turn on the append-only file, and with them every post answered 204
// survives Redis being SIGKILLed right after and restarted.
func TestDeployRedisConfig(t *testing.T) {
	conf := redisConfArgs(t)
	var args []string
	for name, values := range conf {
		args = append(args, "--"+name)
		args = append(args, values...)
	}
	rs := redistest.Start(t, redistest.Args(args...))
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	c := login(t, srv.URL, "durable")
	want := numbered("durable", 20)
	postAll(c, want)
	srv.stop()
	rs.Kill() // no shutdown save: only the append-only file has them
	rs.Restart()
	n, err := rs.Client().XLen(t.Context(), chatHistoryKey).Result()
	if err != nil || n != int64(len(want)) {
		t.Fatalf("after SIGKILL and restart the history holds %d messages (%v), want the %d answered 204", n, err, len(want))
	}
	for name, want := range map[string]string{"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"} {
		got, err := rs.Client().ConfigGet(t.Context(), name).Result()
		if err != nil || got[name] != want {
			t.Fatalf("with deploy/redis/redis.conf, %s is %q (%v), want %q", name, got[name], err, want)
		}
	}
}
