package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"chatroom/internal/chat"
)

// maxStreamsLimit is the most -max-streams may be; 0 means this many.
const maxStreamsLimit = 1 << 20

// config is every setting of the server. Each has a flag and an environment
// variable; the flag wins.
type config struct {
	addr            string
	redisURL        string
	sessionKeys     string
	sessionMaxAge   time.Duration
	secureCookies   bool
	trustedProxies  string
	publicURL       string
	tlsCert         string
	tlsKey          string
	h2c             bool
	historyLen      int64
	pageHistory     int64
	maxMessage      int
	ratePosts       int
	rateBurst       int
	rateLogins      int
	ratePasswords   int
	maxStreams      int
	perSession      int
	streamBuffer    int
	streamBytes     int
	replayMax       int
	replayMaxBytes  int
	streamMode      string
	heartbeat       time.Duration
	writeTimeout    time.Duration
	waitReplicas    int
	waitTimeout     time.Duration
	probeInterval   time.Duration
	probeTimeout    time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	roomLinger      time.Duration
	roomTTL         time.Duration
	maxRooms        int
	rateJoins       int
	rateTyping      int
	presenceTTL     time.Duration
	presenceGrace   time.Duration

	// settings is every flag's effective value, secrets masked, for the
	// one log line at start.
	settings []any
}

// parseConfig reads flags, falling back to environment variables.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	name := "chatroom"
	if len(args) > 0 {
		name, args = filepath.Base(args[0]), args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	env := map[string]string{} // flag name -> environment variable
	str := func(p *string, flagName, envName, def, usage string) {
		env[flagName] = envName
		fs.StringVar(p, flagName, def, usage+" (env "+envName+")")
	}
	num := func(p *int, flagName, envName string, def int, usage string) {
		env[flagName] = envName
		fs.IntVar(p, flagName, def, usage+" (env "+envName+")")
	}
	num64 := func(p *int64, flagName, envName string, def int64, usage string) {
		env[flagName] = envName
		fs.Int64Var(p, flagName, def, usage+" (env "+envName+")")
	}
	dur := func(p *time.Duration, flagName, envName string, def time.Duration, usage string) {
		env[flagName] = envName
		fs.DurationVar(p, flagName, def, usage+" (env "+envName+")")
	}
	boolean := func(p *bool, flagName, envName string, def bool, usage string) {
		env[flagName] = envName
		fs.BoolVar(p, flagName, def, usage+" (env "+envName+")")
	}

	str(&c.addr, "addr", "ADDR", "localhost:5000", "listen address")
	str(&c.redisURL, "redis", "REDIS_URL", "", "Redis URL: redis://, rediss:// (TLS), unix:///path.sock, redis+sentinel://host:port[,host:port]/master, redis+cluster://host:port[,host:port]; empty: an embedded in-memory Redis")
	str(&c.sessionKeys, "session-keys", "SESSION_KEYS", "", "comma-separated session secrets (each at least 32 characters), newest first; the first signs, all verify. Empty: one generated and shared through Redis")
	dur(&c.sessionMaxAge, "session-max-age", "SESSION_MAX_AGE", 7*24*time.Hour, "how long a login lasts")
	boolean(&c.secureCookies, "secure-cookies", "SECURE_COOKIES", false, "always mark the session cookie Secure (the site is served over HTTPS)")
	str(&c.trustedProxies, "trusted-proxies", "TRUSTED_PROXIES", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed")
	str(&c.publicURL, "public-url", "PUBLIC_URL", "", "comma-separated public URLs of the site, e.g. https://chat.example.org: their origins pass the cross-origin check, and https there means Secure cookies")
	str(&c.tlsCert, "tls-cert", "TLS_CERT", "", "TLS certificate file: serve HTTPS (and HTTP/2)")
	str(&c.tlsKey, "tls-key", "TLS_KEY", "", "TLS key file")
	boolean(&c.h2c, "h2c", "H2C", false, "also accept unencrypted HTTP/2 (for a proxy speaking h2c)")
	num64(&c.historyLen, "history", "HISTORY_LEN", 10000, "messages kept in history per room")
	num64(&c.pageHistory, "page-history", "PAGE_HISTORY", 50, "messages rendered into the chat page")
	num(&c.maxMessage, "max-message", "MAX_MESSAGE_LEN", 2000, "longest message, in characters")
	num(&c.ratePosts, "rate-posts", "RATE_POSTS", 5, "messages per second per user, shared by all instances (0: no limit)")
	num(&c.rateBurst, "rate-burst", "RATE_BURST", 10, "burst of messages allowed above -rate-posts")
	num(&c.rateLogins, "rate-logins", "RATE_LOGINS", 60, "logins per minute per client IP (0: no limit)")
	num(&c.ratePasswords, "rate-passwords", "RATE_PASSWORDS", 5, "password attempts per minute per name and IP (0: no limit)")
	num(&c.maxStreams, "max-streams", "MAX_STREAMS", 20000, "open streams per instance; beyond it /stream answers 503 (0: up to 1048576)")
	num(&c.perSession, "streams-per-session", "STREAMS_PER_SESSION", 8, "open streams per login (0: no limit)")
	num(&c.streamBuffer, "stream-buffer", "STREAM_BUFFER", 256, "events queued per stream (not yet written to its socket) before a slow client is disconnected")
	num(&c.streamBytes, "stream-buffer-bytes", "STREAM_BUFFER_BYTES", 1<<20, "bytes queued per stream (not yet written to its socket) before a slow client is disconnected")
	num(&c.replayMax, "replay-max", "REPLAY_MAX", 300, "most messages replayed when a stream resumes; beyond, the newest are sent with a history-trimmed notice")
	num(&c.replayMaxBytes, "replay-max-bytes", "REPLAY_MAX_BYTES", 1<<20, "most bytes of messages replayed when a stream resumes")
	str(&c.streamMode, "stream-mode", "STREAM_MODE", "pooled", "how plain HTTP/1 streams are served: pooled (connection hijacked and served by shared writers, a few KiB each) or goroutine (one per stream); TLS and HTTP/2 streams are always goroutine")
	dur(&c.heartbeat, "heartbeat", "HEARTBEAT", 15*time.Second, "interval of heartbeat comments on streams")
	dur(&c.writeTimeout, "write-timeout", "WRITE_TIMEOUT", 10*time.Second, "a stream whose writes make no progress this long is closed")
	num(&c.waitReplicas, "redis-wait-replicas", "REDIS_WAIT_REPLICAS", 0, "a post waits until this many Redis replicas have it (WAIT) before answering 204")
	dur(&c.waitTimeout, "redis-wait-timeout", "REDIS_WAIT_TIMEOUT", time.Second, "how long a post waits for replicas")
	dur(&c.probeInterval, "probe-interval", "PROBE_INTERVAL", 2*time.Second, "how often the subscription is probed end to end")
	dur(&c.probeTimeout, "probe-timeout", "PROBE_TIMEOUT", 3*time.Second, "a probe not back within this re-establishes the subscription")
	dur(&c.shutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 8*time.Second, "longest graceful shutdown")
	str(&c.logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	dur(&c.roomLinger, "room-linger", "ROOM_LINGER", 30*time.Second, "a room whose last local stream closed stays subscribed this long")
	dur(&c.roomTTL, "room-ttl", "ROOM_TTL", 90*24*time.Hour, "a room (other than the default one) and its history are deleted this long after its last message (0: never)")
	num(&c.maxRooms, "max-rooms", "MAX_ROOMS", 20, "rooms one user may have joined at once")
	num(&c.rateJoins, "rate-joins", "RATE_JOINS", 20, "rooms a user may join (or create) per minute, shared by all instances (0: no limit)")
	num(&c.rateTyping, "rate-typing", "RATE_TYPING", 30, "typing signals per minute per user and room, burst 2 (0: no limit)")
	dur(&c.presenceTTL, "presence-ttl", "PRESENCE_TTL", 40*time.Second, "an instance that stops refreshing its users' presence (it crashed) drops them from online lists after this, plus a quarter of it")
	dur(&c.presenceGrace, "presence-grace", "PRESENCE_GRACE", 5*time.Second, "how long after a person's last stream closed they are shown as gone (a reload or reconnect within it shows nothing)")

	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [flags]\n\nA real-time chat room: go run . and open the URL it prints.\nEvery flag falls back to the environment variable named with it.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(env[f.Name]); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %v", env[f.Name], v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "redis":
			v = redactURL(v)
		case "session-keys":
			v = fmt.Sprintf("(%d configured)", len(c.secrets()))
		}
		c.settings = append(c.settings, f.Name, v)
	})
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.historyLen >= 1, "-history must be at least 1")
	check(c.pageHistory >= 0, "-page-history must not be negative")
	check(c.maxMessage >= 1, "-max-message must be at least 1")
	check(c.streamBuffer >= 2, "-stream-buffer must be at least 2")
	check(c.maxStreams >= 0 && c.maxStreams <= maxStreamsLimit && c.perSession >= 0, "stream limits must be between 0 and %d", maxStreamsLimit)
	check(c.streamBytes >= 4096, "-stream-buffer-bytes must be at least 4096")
	check(c.replayMax >= 1 && c.replayMaxBytes >= 1, "-replay-max and -replay-max-bytes must be at least 1")
	check(c.streamMode == "pooled" || c.streamMode == "goroutine", "-stream-mode must be pooled or goroutine")
	check(c.heartbeat > 0 && c.writeTimeout > 0 && c.probeInterval > 0 && c.probeTimeout > 0, "durations must be positive")
	check((c.tlsCert == "") == (c.tlsKey == ""), "-tls-cert and -tls-key go together")
	check(c.roomTTL == 0 || c.roomTTL >= time.Minute, "-room-ttl must be 0 (never) or at least 1m")
	check(c.roomLinger >= 0, "-room-linger must not be negative")
	check(c.presenceGrace > 0, "-presence-grace must be positive (a reload must not show as leave + join)")
	check(c.presenceTTL >= time.Second && c.presenceTTL <= 45*time.Second, "-presence-ttl must be between 1s and 45s (a crashed instance's users must leave within a minute)")
	check(c.maxRooms >= 1 && c.maxRooms <= chat.MaxPositionRooms, "-max-rooms must be between 1 and %d", chat.MaxPositionRooms)
	check(c.rateJoins >= 0 && c.rateTyping >= 0, "rate limits must not be negative")
	for _, k := range c.secrets() {
		check(len(k) >= 32, "each session key must be at least 32 characters")
	}
	_, err := parseProxies(c.trustedProxies)
	check(err == nil, "-trusted-proxies: %v", err)
	_, err = parsePublicURLs(c.publicURL)
	check(err == nil, "-public-url (PUBLIC_URL): %v", err)
	return errors.Join(errs...)
}

func (c config) secrets() []string {
	var out []string
	for _, k := range strings.Split(c.sessionKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}
