package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// TestDeploySystemdUnit: systemd accepts the shipped unit as it is (no
// unknown or misplaced setting), it has what the README promises (a
// throw-away user, a read-only system, no new privileges, a restart
// policy, room for many sockets), and systemd's own exposure score of its
// sandbox stays where it was measured (1.6 with systemd 252; without
// DynamicUser it is 2.0, without the capability bound 3.4).
func TestDeploySystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed: make deps installs Debian's package systemd where apt offers it")
	}
	unit, err := os.ReadFile("deploy/systemd/chatroom.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "Restart": "on-failure"} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	if n, err := strconv.Atoi(settings["LimitNOFILE"]); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%q, want at least 65536", settings["LimitNOFILE"])
	}
	// An instance of the template, with the binary where ExecStart looks
	// for it (verify checks that it exists).
	dir := t.TempDir()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(unit), "/usr/local/bin/chatroom", bin, 1)
	path := filepath.Join(dir, "chatroom@5001.service")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for chatroom@5001\.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	exposure, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd exposure level %.1f", exposure)
	if exposure > 1.6 {
		t.Errorf("exposure level %.1f, want at most 1.6 (0 is the most locked down, 10 none)", exposure)
	}
}
