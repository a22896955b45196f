package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
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
	logFormat       string
	roomLinger      time.Duration
	roomTTL         time.Duration
	maxRooms        int
	rateJoins       int
	rateTyping      int
	presenceTTL     time.Duration
	presenceGrace   time.Duration
	admins          string
	editWindow      time.Duration
	rateMod         int
	version         bool   // print the version and exit
	dataDir         string // the embedded Redis's; "off": keep nothing
	saveInterval    time.Duration
	streamsPerAddr  int
	connsPerAddr    int
	ratePostsAddr   int
	ratePostsRoom   int
	newNameAge      time.Duration
	newNamePosts    int
	slowMode        time.Duration
	maxLines        int
	sessionKeyFile  string
	metricsAddr     string
	hashSlots       int
	hashWait        time.Duration
	reserveTTL      time.Duration
	rateReserves    int
	nameFailures    int
	nameBackoff     time.Duration
	nameBackoffMax  time.Duration

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

	fs.BoolVar(&c.version, "version", false, "print the version of this build and exit")
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
	str(&c.logFormat, "log-format", "LOG_FORMAT", "text", "text (key=value lines) or json (one JSON object per line)")
	dur(&c.roomLinger, "room-linger", "ROOM_LINGER", 30*time.Second, "a room whose last local stream closed stays subscribed this long")
	dur(&c.roomTTL, "room-ttl", "ROOM_TTL", 90*24*time.Hour, "a room (other than the default one) and its history are deleted this long after its last message (0: never)")
	num(&c.maxRooms, "max-rooms", "MAX_ROOMS", 20, "rooms one user may have joined at once")
	num(&c.rateJoins, "rate-joins", "RATE_JOINS", 20, "rooms a user may join (or create) per minute, shared by all instances (0: no limit)")
	num(&c.rateTyping, "rate-typing", "RATE_TYPING", 30, "typing signals per minute per user and room, burst 2 (0: no limit)")
	dur(&c.presenceTTL, "presence-ttl", "PRESENCE_TTL", 40*time.Second, "an instance that stops refreshing its users' presence (it crashed) drops them from online lists after this, plus a quarter of it")
	dur(&c.presenceGrace, "presence-grace", "PRESENCE_GRACE", 5*time.Second, "how long after a person's last stream closed they are shown as gone (a reload or reconnect within it shows nothing)")
	num(&c.streamsPerAddr, "streams-per-addr", "STREAMS_PER_ADDR", 100, "open streams per client address (IPv6: per /64), all instances together (0: no limit)")
	num(&c.connsPerAddr, "conns-per-addr", "CONNS_PER_ADDR", 256, "open connections per peer address to this instance, idle ones included; trusted proxies are exempt (0: no limit)")
	num(&c.ratePostsAddr, "rate-posts-addr", "RATE_POSTS_ADDR", 10, "messages per second per client address (IPv6: per /64), burst twice that, all instances together (0: no limit)")
	num(&c.ratePostsRoom, "rate-posts-room", "RATE_POSTS_ROOM", 30, "messages per second per room, burst twice that, all instances together (0: no limit)")
	dur(&c.newNameAge, "new-name-age", "NEW_NAME_AGE", 10*time.Minute, "a name that first posted less than this ago is new, limited by -new-name-posts (0: no such limit)")
	num(&c.newNamePosts, "new-name-posts", "NEW_NAME_POSTS", 20, "messages per minute a new name may post, burst 10 (0: no such limit)")
	dur(&c.slowMode, "slow-mode", "SLOW_MODE", 0, "default slow mode: the least time between two messages of one user in a room; a room's own setting (Redis key chat:slowmode:<room>, seconds) wins (0: off)")
	num(&c.maxLines, "max-lines", "MAX_LINES", 40, "most lines in one message (beyond: 400)")
	str(&c.sessionKeyFile, "session-key-file", "SESSION_KEY_FILE", "", "file of session secrets, one per line, newest first (instead of -session-keys); created with one random secret (mode 0600) when missing; refused when others may read it")
	str(&c.metricsAddr, "metrics-addr", "METRICS_ADDR", "", "listen address of the private listener for Prometheus metrics (GET /metrics) and net/http/pprof (/debug/pprof/); empty: off. Never the public address")

	num(&c.hashSlots, "hash-slots", "HASH_SLOTS", max(1, runtime.GOMAXPROCS(0)/2), "password hashes (bcrypt) computed at once per instance; one client address may have half of them (at least 1) waiting or running")
	dur(&c.hashWait, "hash-wait", "HASH_WAIT", time.Second, "how long a login with a password waits for a free hash slot before 503")
	dur(&c.reserveTTL, "reserve-ttl", "RESERVE_TTL", 180*24*time.Hour, "a reserved name that nobody logs in to with its password this long becomes free again (0: never)")
	num(&c.rateReserves, "rate-reserves", "RATE_RESERVES", 20, "names one client address may reserve per day (0: no limit)")
	num(&c.nameFailures, "name-failures", "NAME_FAILURES", 5, "wrong passwords for one name, from all addresses together, before each further attempt is held back (0: never)")
	dur(&c.nameBackoff, "name-backoff", "NAME_BACKOFF", 5*time.Second, "first hold after -name-failures wrong passwords; it doubles with every further one (a browser that logged in to the name before is not held)")
	dur(&c.nameBackoffMax, "name-backoff-max", "NAME_BACKOFF_MAX", 15*time.Minute, "longest hold of a name after wrong passwords")

	str(&c.admins, "admins", "ADMINS", "", "comma-separated names of admins (moderators); each must be reserved with a password to act")
	dur(&c.editWindow, "edit-window", "EDIT_WINDOW", 15*time.Minute, "how long after sending a message its author may edit or delete it")
	num(&c.rateMod, "rate-mod", "RATE_MOD", 30, "moderation requests (deletes, edits, admin actions) per user and minute (0: no limit)")

	str(&c.dataDir, "data-dir", "DATA_DIR", "", "where the embedded Redis (no REDIS_URL) keeps its data across restarts; empty: $XDG_DATA_HOME/chatroom or ~/.local/share/chatroom; off: keep nothing")
	dur(&c.saveInterval, "save-interval", "SAVE_INTERVAL", 5*time.Second, "how often the embedded Redis saves to -data-dir (and at shutdown): what a crash can lose")

	usage := func() {
		fs.SetOutput(out)
		fmt.Fprintf(out, "Usage: %s [flags]\n\nA real-time chat room: go run . and open the URL it prints.\nEvery flag falls back to the environment variable named with it.\n\n", name)
		fs.PrintDefaults()
	}
	// A bad flag is one line (returned, printed by main), not the error
	// and the whole usage: only -h prints that.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return c, err
		}
		return c, fmt.Errorf("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	if c.version {
		return c, nil
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
	if err := oneLine(errs); err != nil {
		return c, err
	}
	if c.redisURL != "" && c.dataDir != "" && c.dataDir != "off" {
		return c, errors.New("-data-dir (DATA_DIR) applies only to the embedded Redis, and REDIS_URL is set: the data lives in that Redis")
	}
	if c.dataDir == "" && c.redisURL == "" {
		c.dataDir = defaultDataDir(getenv)
		fs.Set("data-dir", c.dataDir)
	}
	if c.dataDir == "off" {
		c.dataDir = ""
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
	check(c.maxStreams >= 0 && c.maxStreams <= maxStreamsLimit, "-max-streams must be between 0 and %d", maxStreamsLimit)
	check(c.perSession >= 0, "-streams-per-session must not be negative")
	check(c.streamBytes >= 4096, "-stream-buffer-bytes must be at least 4096")
	check(c.replayMax >= 1, "-replay-max must be at least 1")
	check(c.replayMaxBytes >= 1, "-replay-max-bytes must be at least 1")
	check(c.streamMode == "pooled" || c.streamMode == "goroutine", "-stream-mode must be pooled or goroutine")
	check(c.logFormat == "text" || c.logFormat == "json", "-log-format must be text or json")
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-heartbeat", c.heartbeat}, {"-write-timeout", c.writeTimeout}, {"-probe-interval", c.probeInterval},
		{"-probe-timeout", c.probeTimeout}, {"-session-max-age", c.sessionMaxAge}, {"-shutdown-timeout", c.shutdownTimeout},
		{"-redis-wait-timeout", c.waitTimeout}} {
		check(d.v > 0, "%s must be positive", d.name)
	}
	check(c.probeTimeout >= c.probeInterval, "-probe-timeout (%v) must not be shorter than -probe-interval (%v): every probe would be given up before the next", c.probeTimeout, c.probeInterval)
	check((c.tlsCert == "") == (c.tlsKey == ""), "-tls-cert and -tls-key go together")
	check(c.roomTTL == 0 || c.roomTTL >= time.Minute, "-room-ttl must be 0 (never) or at least 1m")
	check(c.roomLinger >= 0, "-room-linger must not be negative")
	check(c.presenceGrace > 0, "-presence-grace must be positive (a reload must not show as leave + join)")
	check(c.presenceTTL >= time.Second && c.presenceTTL <= 45*time.Second, "-presence-ttl must be between 1s and 45s (a crashed instance's users must leave within a minute)")
	check(c.maxRooms >= 1 && c.maxRooms <= chat.MaxPositionRooms, "-max-rooms must be between 1 and %d", chat.MaxPositionRooms)
	for _, r := range []struct {
		name string
		v    int
	}{{"-rate-posts", c.ratePosts}, {"-rate-burst", c.rateBurst}, {"-rate-logins", c.rateLogins},
		{"-rate-passwords", c.ratePasswords}, {"-rate-joins", c.rateJoins}, {"-rate-typing", c.rateTyping},
		{"-rate-posts-addr", c.ratePostsAddr}, {"-rate-posts-room", c.ratePostsRoom}, {"-new-name-posts", c.newNamePosts},
		{"-streams-per-addr", c.streamsPerAddr}, {"-conns-per-addr", c.connsPerAddr},
		{"-redis-wait-replicas", c.waitReplicas}, {"-rate-reserves", c.rateReserves}, {"-name-failures", c.nameFailures}} {
		check(r.v >= 0, "%s must not be negative", r.name)
	}
	check(c.saveInterval >= 100*time.Millisecond, "-save-interval must be at least 100ms")
	check(c.newNameAge >= 0, "-new-name-age must not be negative")
	check(c.slowMode >= 0 && c.slowMode <= maxSlowMode && c.slowMode%time.Second == 0, "-slow-mode must be whole seconds between 0 and %v", maxSlowMode)
	check(c.maxLines >= 1, "-max-lines must be at least 1")
	check(c.sessionKeyFile == "" || c.sessionKeys == "", "-session-keys and -session-key-file exclude each other")
	if c.metricsAddr != "" { // caught here, before anything starts, not at listen
		_, port, err := net.SplitHostPort(c.metricsAddr)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		check(err == nil, "-metrics-addr %q must be host:port with a port number up to 65535", c.metricsAddr)
	}
	check(c.hashSlots >= 1 && c.hashSlots <= 1024, "-hash-slots must be between 1 and 1024")
	check(c.hashWait >= 0 && c.hashWait <= time.Minute, "-hash-wait must be between 0 and 1m")
	check(c.reserveTTL == 0 || c.reserveTTL >= time.Hour, "-reserve-ttl must be 0 (never) or at least 1h")
	check(c.nameBackoff > 0 && c.nameBackoffMax >= c.nameBackoff, "-name-backoff must be positive and at most -name-backoff-max")
	for _, k := range c.secrets() {
		check(len(k) >= 32, "-session-keys: each key must be at least 32 characters (one has %d)", len(k))
	}
	check(c.editWindow >= 0, "-edit-window must not be negative")
	check(c.rateMod >= 0, "-rate-mod must not be negative")
	_, aerr := parseAdmins(c.admins)
	check(aerr == nil, "-admins: %v", aerr)
	_, err := parseProxies(c.trustedProxies)
	check(err == nil, "-trusted-proxies: %v", err)
	_, err = parsePublicURLs(c.publicURL)
	check(err == nil, "-public-url (PUBLIC_URL): %v", err)
	if c.redisURL != "" {
		client, _, _, err := newRedisClient(c.redisURL)
		check(err == nil, "-redis (REDIS_URL) %s: %v", redactURL(c.redisURL), err)
		if err == nil {
			client.Close() // nothing dialled yet: only the URL was checked
		}
	} else {
		check(c.waitReplicas == 0, "-redis-wait-replicas needs a Redis with replicas (REDIS_URL); the embedded one has none")
	}
	return oneLine(errs)
}

// oneLine joins errs into one error of one line, or nil.
func oneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
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
