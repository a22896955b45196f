package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The embedded mode keeps its data (issue 12): `go run .` without Redis
// saves history, reserved names and the session secret into -data-dir, at
// shutdown and every -save-interval, and loads them at start.

// historyTexts is the texts of the default room's newest page of history,
// oldest first.
func historyTexts(t *testing.T, c *chatClient) []string {
	t.Helper()
	resp := c.get("/r/chat/history?limit=100&before=99999999999999-0")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("history: %d %s", resp.StatusCode, resp.body)
	}
	var page struct {
		Messages []struct{ Text string } `json:"messages"`
	}
	if err := json.Unmarshal([]byte(resp.body), &page); err != nil {
		t.Fatalf("history: %v: %s", err, resp.body)
	}
	var out []string
	for _, m := range page.Messages {
		out = append(out, m.Text)
	}
	return out
}

// TestEmbeddedKeepsDataAcrossRestarts: post, reserve a name, stop with
// SIGTERM, start again on the same data directory: the history, the
// reservation and the login (the session secret) are all still there.
func TestEmbeddedKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"-data-dir", dir, "-save-interval", "1h"} // only the shutdown saves
	p := startProcess(t, "", "127.0.0.1:0", flags...)
	if out := p.logs.String(); !strings.Contains(out, "embedded Redis keeps its data") || !strings.Contains(out, dir) {
		t.Errorf("the log does not name the data directory:\n%s", out)
	}
	if out := p.logs.String(); !strings.Contains(out, "a_crash_loses") {
		t.Errorf("the log does not say what a crash can lose:\n%s", out)
	}
	alice := newClient(t, p.URL)
	if r := alice.postForm("/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reserve alice: %d %s", r.StatusCode, r.body)
	}
	var want []string
	for i := range 5 {
		text := fmt.Sprintf("kept %d", i)
		alice.post(text)
		want = append(want, text)
	}
	p.terminate(t, 30*time.Second)

	p = startProcess(t, "", "127.0.0.1:0", flags...)
	alice = alice.withBase(p.URL)
	if got := historyTexts(t, alice); !slices.Equal(got, want) {
		t.Errorf("after a restart the history is %q, want %q", got, want)
	}
	// The old cookie still works: the session secret was kept.
	if r := alice.get("/whoami"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "alice") {
		t.Errorf("after a restart the old login gives %d %s, want alice", r.StatusCode, r.body)
	}
	// The reservation was kept: alice's name needs its password.
	if r := newClient(t, p.URL).postForm("/login", url.Values{"user": {"alice"}}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("after a restart alice without a password gets %d %s, want 401", r.StatusCode, r.body)
	}
	if r := newClient(t, p.URL).postForm("/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after a restart alice with her password gets %d %s", r.StatusCode, r.body)
	}
	alice.post("after the restart")

	// One server per data directory.
	out, status := runBinary(t, "-addr", "127.0.0.1:0", "-redis", "", "-data-dir", dir)
	if status != 1 || !strings.Contains(out, "in use by another chat server") {
		t.Errorf("a second server on the same data directory exited %d: %q", status, out)
	}
}

// TestEmbeddedCrashLosesAtMostTheInterval: SIGKILL gives no chance to save;
// what was saved by the periodic save is there after a restart.
func TestEmbeddedCrashLosesAtMostTheInterval(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"-data-dir", dir, "-save-interval", "200ms"}
	p := startProcess(t, "", "127.0.0.1:0", flags...)
	alice := login(t, p.URL, "alice")
	var want []string
	for i := range 3 {
		text := fmt.Sprintf("saved %d", i)
		alice.post(text)
		want = append(want, text)
	}
	// The periodic save writes the snapshot with the messages in it.
	snapshot := filepath.Join(dir, snapshotName)
	waitFor(t, 30*time.Second, "the periodic save has the messages", func() bool {
		b, err := os.ReadFile(snapshot)
		return err == nil && strings.Contains(string(b), "saved 2")
	})
	p.kill()

	p = startProcess(t, "", "127.0.0.1:0", flags...)
	alice = alice.withBase(p.URL)
	if got := historyTexts(t, alice); !slices.Equal(got, want) {
		t.Errorf("after a SIGKILL the history is %q, want what was saved: %q", got, want)
	}
}

// TestEmbeddedTTLsElapse: keys given a TTL expire in the embedded Redis as in
// a real one (miniredis only moves TTLs when told to), so limits, lockouts
// and expiring records end.
func TestEmbeddedTTLsElapse(t *testing.T) {
	e, err := startEmbedded("", time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := redis.NewClient(&redis.Options{Addr: e.Addr()})
	defer c.Close()
	if err := c.Set(t.Context(), "short", "v", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	c.Set(t.Context(), "kept", "v", 0)
	waitFor(t, 10*time.Second, "the key with a 1 s TTL expires", func() bool {
		return c.Exists(t.Context(), "short").Val() == 0
	})
	if c.Exists(t.Context(), "kept").Val() != 1 {
		t.Error("a key without a TTL went away")
	}
}

// TestEmbeddedSnapshotRoundTrip: every type the chat stores (strings,
// lists, sets, hashes, sorted sets, streams), with their TTLs, comes back
// as it was; an expired key does not; a damaged file stops the start.
func TestEmbeddedSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	e, err := startEmbedded(dir, time.Hour, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c := redis.NewClient(&redis.Options{Addr: e.Addr()})
	c.Set(ctx, "s", "text \x00 with bytes \xff", 0)
	c.Set(ctx, "ttl", "v", time.Hour)
	c.Set(ctx, "gone", "v", 1500*time.Millisecond)
	c.RPush(ctx, "l", "a", "b", "a")
	c.SAdd(ctx, "set", "x", "y")
	c.HSet(ctx, "h", "f1", "v1", "f2", "v2")
	c.ZAdd(ctx, "z", redis.Z{Score: 1.5, Member: "m1"}, redis.Z{Score: -2, Member: "m2"})
	var ids []string
	for i := range 3 {
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: "st", Values: []string{"k", fmt.Sprint(i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	c.Close()
	e.Close()

	// Later than "gone"'s TTL, within "ttl"'s.
	time.Sleep(1600 * time.Millisecond) // the clock must pass an expiry: nothing to wait on
	e, err = startEmbedded(dir, time.Hour, log)
	if err != nil {
		t.Fatal(err)
	}
	c = redis.NewClient(&redis.Options{Addr: e.Addr()})
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("s", c.Get(ctx, "s").Val(), "text \x00 with bytes \xff")
	check("ttl kept", c.TTL(ctx, "ttl").Val() > 50*time.Minute, true)
	check("gone", c.Exists(ctx, "gone").Val(), 0)
	check("l", c.LRange(ctx, "l", 0, -1).Val(), []string{"a", "b", "a"})
	check("set", c.SMembers(ctx, "set").Val(), []string{"x", "y"})
	check("h", c.HGetAll(ctx, "h").Val(), map[string]string{"f1": "v1", "f2": "v2"})
	check("z", c.ZRangeWithScores(ctx, "z", 0, -1).Val(), []redis.Z{{Score: -2, Member: "m2"}, {Score: 1.5, Member: "m1"}})
	var got []string
	for _, m := range c.XRange(ctx, "st", "-", "+").Val() {
		got = append(got, m.ID+"="+fmt.Sprint(m.Values["k"]))
	}
	check("st", got, []string{ids[0] + "=0", ids[1] + "=1", ids[2] + "=2"})
	// A new entry still gets a newer ID than the restored ones.
	if id := c.XAdd(ctx, &redis.XAddArgs{Stream: "st", Values: []string{"k", "3"}}).Val(); compareShownIDs(id, ids[2]) <= 0 {
		t.Errorf("a new entry got %s, not after %s", id, ids[2])
	}
	c.Close()
	e.Close()

	if err := os.WriteFile(filepath.Join(dir, snapshotName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := startEmbedded(dir, time.Hour, log); err == nil || !strings.Contains(err.Error(), "cannot load") {
		t.Errorf("a damaged snapshot gave %v, want an error that stops the start", err)
	}
}

// runBinary runs the server binary with args until it exits (within a
// minute) and returns what it printed and its exit status.
func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
		return "", -1
	}
}
