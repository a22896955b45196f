package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestConfigHelp checks that -h lists every setting with its environment
// variable and default, and that asking for help is not an error.
func TestConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), []string{"chatroom", arg}, func(string) string { return "" }, &out); err != nil {
				t.Fatalf("run %s: %v", arg, err)
			}
			flags := parseHelp(t, out.String())
			// Every config field but the derived settings list is a
			// setting, and each has a flag.
			if n := reflect.TypeFor[config]().NumField() - 1; len(flags) != n {
				t.Errorf("-h lists %d flags, config has %d settings:\n%s", len(flags), n, out.String())
			}
			envs := map[string]string{}
			for name, f := range flags {
				if name == "version" { // an action, not a setting
					continue
				}
				if f.env == "" {
					t.Errorf("-%s names no environment variable: %q", name, f.usage)
					continue
				}
				if other, dup := envs[f.env]; dup {
					t.Errorf("-%s and -%s share the environment variable %s", name, other, f.env)
				}
				envs[f.env] = name
			}
			for _, want := range []struct{ flag, env, def string }{
				{"addr", "ADDR", `"localhost:5000"`},
				{"redis", "REDIS_URL", ""}, // empty: embedded, said in the usage
				{"history", "HISTORY_LEN", "10000"},
				{"page-history", "PAGE_HISTORY", "50"},
				{"max-message", "MAX_MESSAGE_LEN", "2000"},
				{"rate-posts", "RATE_POSTS", "5"},
				{"rate-burst", "RATE_BURST", "10"},
				{"stream-mode", "STREAM_MODE", `"pooled"`},
				{"heartbeat", "HEARTBEAT", "15s"},
				{"session-keys", "SESSION_KEYS", ""},
				{"shutdown-timeout", "SHUTDOWN_TIMEOUT", "8s"},
				{"log-level", "LOG_LEVEL", `"info"`},
			} {
				f, ok := flags[want.flag]
				switch {
				case !ok:
					t.Errorf("-h does not list -%s", want.flag)
				case f.env != want.env:
					t.Errorf("-%s: env %q, want %q", want.flag, f.env, want.env)
				case f.def != want.def:
					t.Errorf("-%s: default %q, want %q", want.flag, f.def, want.def)
				}
			}
			if f := flags["redis"]; !strings.Contains(f.usage, "empty: an embedded") {
				t.Errorf("-redis usage does not say what empty means: %q", f.usage)
			}
		})
	}
	t.Run("binary -h", func(t *testing.T) {
		bin, err := buildBinary()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-h").CombinedOutput()
		if err != nil {
			t.Fatalf("-h: %v, want exit status 0\n%s", err, out)
		}
		if !strings.Contains(string(out), "-addr") || !strings.Contains(string(out), "(env REDIS_URL)") {
			t.Fatalf("-h output:\n%s", out)
		}
	})
}

type helpFlag struct{ usage, env, def string }

// parseHelp reads flag.PrintDefaults output: "  -name type\n    \tusage (env X) (default D)".
func parseHelp(t *testing.T, out string) map[string]helpFlag {
	t.Helper()
	flags := map[string]helpFlag{}
	head := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	envRe := regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	defRe := regexp.MustCompile(`\(default (.*)\)\s*$`)
	var name string
	var usage strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		u := usage.String()
		f := helpFlag{usage: u}
		if m := envRe.FindStringSubmatch(u); m != nil {
			f.env = m[1]
		}
		if m := defRe.FindStringSubmatch(u); m != nil {
			f.def = m[1]
		}
		flags[name] = f
		name = ""
		usage.Reset()
	}
	for _, line := range strings.Split(out, "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			flush()
			name = m[1]
			continue
		}
		if name != "" {
			usage.WriteString(strings.TrimSpace(line) + " ")
		}
	}
	flush()
	if len(flags) == 0 {
		t.Fatalf("no flags in help output:\n%s", out)
	}
	return flags
}

// TestConfigEnvFallback checks that unset flags take their environment
// variable and that a flag given on the command line wins, even when it is
// set to the empty string.
func TestConfigEnvFallback(t *testing.T) {
	env := map[string]string{
		"ADDR":           "127.0.0.1:7001",
		"REDIS_URL":      "redis://127.0.0.1:6390/2",
		"HISTORY_LEN":    "123",
		"STREAM_MODE":    "goroutine",
		"HEARTBEAT":      "3s",
		"SECURE_COOKIES": "true",
		"RATE_POSTS":     "0",
	}
	getenv := func(k string) string { return env[k] }

	c, err := parseConfig([]string{"chatroom"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "127.0.0.1:7001" || c.redisURL != "redis://127.0.0.1:6390/2" || c.historyLen != 123 ||
		c.streamMode != "goroutine" || c.heartbeat != 3*time.Second || !c.secureCookies || c.ratePosts != 0 {
		t.Fatalf("environment not applied: %+v", c)
	}
	if c.pageHistory != 50 || c.maxMessage != 2000 || c.logLevel != "info" {
		t.Fatalf("defaults lost: %+v", c)
	}

	c, err = parseConfig([]string{"chatroom", "-addr", "127.0.0.1:7002", "-redis", "", "-history", "7",
		"-stream-mode", "pooled", "-secure-cookies=false", "-rate-posts", "9"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "127.0.0.1:7002" || c.redisURL != "" || c.historyLen != 7 || c.streamMode != "pooled" ||
		c.secureCookies || c.ratePosts != 9 {
		t.Fatalf("flags did not win over the environment: %+v", c)
	}
	if c.heartbeat != 3*time.Second {
		t.Fatalf("HEARTBEAT not applied next to other flags: %v", c.heartbeat)
	}
}

// TestConfigEnvEndToEnd starts the server through run with its settings
// only in the environment: it listens on ADDR and uses the Redis at
// REDIS_URL, not an embedded one.
func TestConfigEnvEndToEnd(t *testing.T) {
	rs := redistest.Start(t)
	env := map[string]string{
		"ADDR":             "127.0.0.1:0",
		"REDIS_URL":        rs.URL(),
		"HISTORY_LEN":      "321",
		"PROBE_INTERVAL":   "200ms",
		"SHUTDOWN_TIMEOUT": "5s",
	}
	srv := runServer(t, []string{"chatroom"}, func(k string) string { return env[k] })
	base, logs := srv.URL, srv.logs
	out := logs.String()
	for _, want := range []string{"url=http://127.0.0.1:", "redis=single", "history=321"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "embedded") {
		t.Errorf("REDIS_URL was set but an embedded Redis started:\n%s", out)
	}
	login(t, base, "alice").post("stored in the real redis")
	n, err := rs.Client().XLen(t.Context(), chatHistoryKey).Result()
	if err != nil || n != 1 {
		t.Fatalf("the redis at REDIS_URL holds %d messages (%v), want 1", n, err)
	}
}

// TestConfigInvalid checks that bad settings stop the program before it
// starts: the real binary exits with status 1 and one line on stderr that
// names the setting.
func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"history zero", []string{"-history", "0"}, nil, "-history must be at least 1"},
		{"history not a number", []string{"-history", "lots"}, nil, `invalid value "lots" for flag -history`},
		{"env history not a number", nil, map[string]string{"HISTORY_LEN": "lots"}, `environment HISTORY_LEN="lots"`},
		{"negative page history", []string{"-page-history", "-1"}, nil, "-page-history must not be negative"},
		{"max message zero", []string{"-max-message", "0"}, nil, "-max-message must be at least 1"},
		{"stream buffer too small", []string{"-stream-buffer", "1"}, nil, "-stream-buffer must be at least 2"},
		{"unknown stream mode", []string{"-stream-mode", "threads"}, nil, "-stream-mode must be pooled or goroutine"},
		{"env unknown stream mode", nil, map[string]string{"STREAM_MODE": "threads"}, "-stream-mode must be pooled or goroutine"},
		{"duration without unit", []string{"-heartbeat", "15"}, nil, `invalid value "15" for flag -heartbeat`},
		{"env bad duration", nil, map[string]string{"WRITE_TIMEOUT": "soon"}, `environment WRITE_TIMEOUT="soon"`},
		{"zero duration", []string{"-heartbeat", "0s"}, nil, "-heartbeat must be positive"},
		{"probe timeout shorter than its interval", []string{"-probe-interval", "5s", "-probe-timeout", "1s"}, nil, "-probe-timeout (1s) must not be shorter than -probe-interval (5s)"},
		{"negative limit", []string{"-max-streams", "-1"}, nil, "-max-streams must be between 0 and"},
		{"negative rate", []string{"-rate-posts", "-1"}, nil, "-rate-posts must not be negative"},
		{"short session key", []string{"-session-keys", "short"}, nil, "-session-keys: each key must be at least 32 characters"},
		{"env short session key", nil, map[string]string{"SESSION_KEYS": "0123456789abcdef0123456789abcdef, short"}, "-session-keys: each key must be at least 32 characters"},
		{"bad trusted proxy", []string{"-trusted-proxies", "10.0.0.300"}, nil, "-trusted-proxies"},
		{"tls cert without key", []string{"-tls-cert", "cert.pem"}, nil, "-tls-cert and -tls-key go together"},
		{"bad bool in env", nil, map[string]string{"SECURE_COOKIES": "maybe"}, `environment SECURE_COOKIES="maybe"`},
		{"unknown flag", []string{"-port", "80"}, nil, "flag provided but not defined: -port"},
		{"stray argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"bad log level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"unsupported redis scheme", []string{"-redis", "http://127.0.0.1:6379"}, nil, `-redis (REDIS_URL) http://127.0.0.1:6379: unsupported scheme "http"`},
		{"env bad redis url", nil, map[string]string{"REDIS_URL": "redis+cluster://127.0.0.1"}, `-redis (REDIS_URL) redis+cluster://127.0.0.1: address "127.0.0.1" needs a port`},
		{"no hash slots", []string{"-hash-slots", "0"}, nil, "-hash-slots must be between 1 and 1024"},
		{"negative hash wait", []string{"-hash-wait", "-1s"}, nil, "-hash-wait must be between 0 and 1m"},
		{"short reserve ttl", []string{"-reserve-ttl", "10m"}, nil, "-reserve-ttl must be 0 (never) or at least 1h"},
		{"negative reserves", []string{"-rate-reserves", "-1"}, nil, "-rate-reserves must not be negative"},
		{"backoff above max", []string{"-name-backoff", "1h", "-name-backoff-max", "1m"}, nil, "-name-backoff must be positive and at most -name-backoff-max"},
		{"sentinel without master", []string{"-redis", "redis+sentinel://127.0.0.1:26379"}, nil, "sentinel URL path must be /master-name"},
		{"wait for replicas of the embedded redis", []string{"-redis-wait-replicas", "1"}, nil, "-redis-wait-replicas needs a Redis with replicas"},
		{"data dir with a real redis", []string{"-redis", "redis://127.0.0.1:1", "-data-dir", "/tmp/x"}, nil, "-data-dir (DATA_DIR) applies only to the embedded Redis"},
		{"save interval too short", []string{"-save-interval", "1ms"}, nil, "-save-interval must be at least 100ms"},
		{"slow mode not whole seconds", []string{"-slow-mode", "1500ms"}, nil, "-slow-mode must be whole seconds between 0 and 24h"},
		{"slow mode too long", []string{"-slow-mode", "25h"}, nil, "-slow-mode must be whole seconds"},
		{"env negative address rate", nil, map[string]string{"RATE_POSTS_ADDR": "-1"}, "-rate-posts-addr must not be negative"},
		{"negative room rate", []string{"-rate-posts-room", "-2"}, nil, "-rate-posts-room must not be negative"},
		{"negative streams per address", []string{"-streams-per-addr", "-1"}, nil, "-streams-per-addr must not be negative"},
		{"env negative conns per address", nil, map[string]string{"CONNS_PER_ADDR": "-1"}, "-conns-per-addr must not be negative"},
		{"max lines zero", []string{"-max-lines", "0"}, nil, "-max-lines must be at least 1"},
		{"negative new name age", []string{"-new-name-age", "-1m"}, nil, "-new-name-age must not be negative"},
		{"key file and keys", []string{"-session-key-file", "/tmp/k", "-session-keys", "0123456789abcdef0123456789abcdef"}, nil, "-session-keys and -session-key-file exclude each other"},
		{"metrics address out of range", []string{"-metrics-addr", "nonsense:99999"}, nil, `-metrics-addr "nonsense:99999" must be host:port`},
		{"env metrics address without port", nil, map[string]string{"METRICS_ADDR": "localhost"}, `-metrics-addr "localhost" must be host:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin, err := buildBinary()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", "127.0.0.1:0"}, tc.args...)...)
			cmd.Env = []string{"HOME=" + t.TempDir()}
			for k, v := range tc.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("%v %v: exit %v, want status 1\nstdout: %s\nstderr: %s", tc.args, tc.env, err, stdout.String(), stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "chatroom: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line naming the setting: %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing (the server must not start, nor print the usage)", stdout.String())
			}
		})
	}
}

// TestVersion: -version prints the build's version (module version, commit
// and Go version, from runtime/debug.BuildInfo) and exits 0.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "chatroom")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("-version: %v", err)
	}
	got := strings.TrimSpace(string(out))
	if !strings.HasPrefix(got, "chatroom ") || !strings.HasSuffix(got, runtime.Version()) || strings.Contains(got, "\n") {
		t.Errorf("-version printed %q, want one line: chatroom <version> … %s", got, runtime.Version())
	}
	// The commit the toolchain recorded (in a git checkout) is named.
	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`vcs\.revision=([0-9a-f]{12})`).FindSubmatch(meta); m != nil {
		if want := "commit " + string(m[1]); !strings.Contains(got, want) {
			t.Errorf("-version printed %q, want it to name %q", got, want)
		}
	} else {
		t.Logf("this build has no commit recorded (not a git checkout, or a git worktree)")
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestConfigUnreachableRedis checks that an unreachable Redis fails the
// start at once with one line that names the URL (password hidden), from
// run and from the real binary (exit status 1, no panic or stack trace).
func TestConfigUnreachableRedis(t *testing.T) {
	addr := closedPort(t)
	redisURL := "redis://chat:s3cret-pass@" + addr + "/0"

	t.Run("run", func(t *testing.T) {
		start := time.Now()
		var out bytes.Buffer
		err := run(context.Background(), []string{"chatroom", "-addr", "127.0.0.1:0", "-redis", redisURL},
			func(string) string { return "" }, &out)
		if err == nil {
			t.Fatal("run started without its Redis")
		}
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("took %v to fail", took)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("error is not one line: %q", msg)
		}
		if !strings.Contains(msg, "cannot reach Redis at redis://chat:xxxxx@"+addr+"/0") {
			t.Errorf("error does not name the (redacted) URL: %q", msg)
		}
		if strings.Contains(msg, "s3cret") || strings.Contains(out.String(), "s3cret") {
			t.Errorf("the password leaked: %q\n%s", msg, out.String())
		}
	})

	t.Run("binary", func(t *testing.T) {
		bin, err := buildBinary()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err = cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("exit: %v, want status 1\nstderr: %s", err, stderr.String())
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v to fail", took)
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if len(lines) != 1 {
			t.Fatalf("stderr has %d lines, want 1:\n%s", len(lines), stderr.String())
		}
		if !strings.HasPrefix(lines[0], "chatroom: cannot reach Redis at redis://chat:xxxxx@"+addr+"/0") {
			t.Errorf("stderr %q", lines[0])
		}
		all := stdout.String() + stderr.String()
		for _, bad := range []string{"panic", "goroutine ", "s3cret", "chat is ready"} {
			if strings.Contains(all, bad) {
				t.Errorf("output contains %q:\n%s", bad, all)
			}
		}
	})
}
