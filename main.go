// Command chatroom is a real-time web chat: server-rendered pages, messages
// through Redis, delivered to browsers over Server-Sent Events.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"chatroom/internal/broker"
	"chatroom/internal/fanout"
	"chatroom/internal/markup"
	"chatroom/internal/presence"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chatroom:", err)
		os.Exit(1)
	}
}

// run is the whole program: it returns when ctx ends (after a graceful
// shutdown) or when the server cannot start.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return runWith(ctx, args, getenv, stdout, options{})
}

// options are what tests can add to a server started through runWith.
type options struct {
	// redisHooks are added to the server's Redis client, so a test can
	// hold or fail a chosen command at the exact step it guards.
	redisHooks []redis.Hook
	// hashing, when set, is called as each password hash starts with the
	// number of hashes then running on this instance.
	hashing func(active int64)
	// bcryptCost, when set, replaces the cost of new password hashes
	// (bcrypt at the real cost takes seconds under the race detector).
	bcryptCost int
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, opts options) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, version())
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	var logTo slog.Handler = slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level})
	if cfg.logFormat == "json" {
		logTo = slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(logTo)
	log.Info("configuration", cfg.settings...)

	rc, err := openRedis(ctx, cfg.redisURL, log, cfg.dataDir, cfg.saveInterval)
	if err != nil {
		return err
	}
	defer rc.close()
	for _, hk := range opts.redisHooks {
		rc.client.AddHook(hk)
	}

	configured := cfg.secrets()
	if cfg.sessionKeyFile != "" {
		if configured, err = readKeyFile(cfg.sessionKeyFile); err != nil {
			return err
		}
	}
	secrets, shared, err := sessionSecrets(ctx, rc.client, configured)
	if err != nil {
		return err
	}
	if shared {
		log.Warn("no session keys configured: the generated secret is kept in redis in plain text, and whoever can read redis can forge any identity; set -session-key-file or -session-keys")
	}
	proxies, _ := parseProxies(cfg.trustedProxies) // validated in parseConfig
	public, _ := parsePublicURLs(cfg.publicURL)    // likewise
	secureCookies := cfg.secureCookies || public.https()
	if len(public) > 0 {
		log.Info("public url", "origins", public.String(), "secure_cookies", secureCookies)
	}
	slots := newStreamSlots(rc.client, cfg.perSession, cfg.streamsPerAddr, log)
	admins, _ := parseAdmins(cfg.admins) // validated in parseConfig
	md := markup.New()
	pages, err := parsePages(md)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	static, err := loadStatic(assets)
	if err != nil {
		return err
	}
	m := newMetrics(rc.client)
	logClosed := logStreamClosed(log)
	h := fanout.New(fanout.Config{
		QueueEvents:       cfg.streamBuffer,
		QueueBytes:        cfg.streamBytes,
		MaxStreams:        cfg.maxStreams,
		StreamsPerSession: cfg.perSession,
		Heartbeat:         cfg.heartbeat,
		WriteTimeout:      cfg.writeTimeout,
		Writers:           max(4, 2*runtime.GOMAXPROCS(0)),
		Ping:              pingEvent(),
		Disconnect:        disconnectEvent,
		Status:            statusEvent,
		Closed: func(c fanout.Closed) {
			logClosed(c)
			m.streamClosed(c)
		},
		Latency: m.delivered,
	}, log)
	b := broker.New(rc.client, broker.Config{
		HistoryLen:    cfg.historyLen,
		Sharded:       rc.sharded,
		WaitReplicas:  cfg.waitReplicas,
		WaitTimeout:   cfg.waitTimeout,
		ProbeInterval: cfg.probeInterval,
		ProbeTimeout:  cfg.probeTimeout,
		OpTimeout:     3 * time.Second,
		Linger:        cfg.roomLinger,
		RoomTTL:       cfg.roomTTL,
		ProbeRTT:      m.probed,
	}, log)
	m.watch(h, b)
	pres := presence.New(rc.client, presence.Config{
		TTL:     cfg.presenceTTL,
		Grace:   cfg.presenceGrace,
		Sharded: rc.sharded,
	}, log)
	online := newOnlineNames(pres)
	failuresFree := cfg.nameFailures
	if failuresFree == 0 {
		failuresFree = math.MaxInt32
	}
	names := nameGuard{
		nameSettings: nameSettings{
			hashSlots:      cfg.hashSlots,
			hashWait:       cfg.hashWait,
			reserveTTL:     cfg.reserveTTL,
			reservesPerDay: cfg.rateReserves,
			failuresFree:   failuresFree,
			backoffBase:    cfg.nameBackoff,
			backoffMax:     cfg.nameBackoffMax,
			onlineHold:     max(2*cfg.presenceTTL, 6*time.Second),
			deviceMaxAge:   max(cfg.reserveTTL, cfg.sessionMaxAge, 30*24*time.Hour),
		},
		gate:       newHashGate(cfg.hashSlots, cfg.hashWait, opts.hashing),
		bcryptCost: cmp.Or(opts.bcryptCost, bcryptCost),
		device:     deviceCodecs(secrets, max(cfg.reserveTTL, cfg.sessionMaxAge, 30*24*time.Hour)),
	}
	d := deps{
		log:         log,
		pages:       pages,
		markup:      md,
		sessions:    newSessionStore(secrets, cfg.sessionMaxAge, secureCookies, proxies),
		broker:      b,
		hub:         h,
		rdb:         rc.client,
		limiter:     redis_rate.NewLimiter(rc.client),
		limits:      limits{postsPerSec: cfg.ratePosts, postBurst: cfg.rateBurst, loginsPerMin: cfg.rateLogins, passwordPerMin: cfg.ratePasswords},
		maxMessage:  cfg.maxMessage,
		pageHistory: cfg.pageHistory,
		historyLen:  cfg.historyLen,
		rooms:       roomLimits{max: cfg.maxRooms, joinsPerMin: cfg.rateJoins, typingPerMin: cfg.rateTyping},
		presence:    online,
		online:      newOnlineReads(pres, 3*time.Second),
		names:       names,
		static:      static,
		origins:     public,
		slots:       slots,
		metrics:     m,
		posts: postLimits{
			perAddr:    cfg.ratePostsAddr,
			perRoom:    cfg.ratePostsRoom,
			newAge:     cfg.newNameAge,
			newPerMin:  cfg.newNamePosts,
			slowMode:   cfg.slowMode,
			maxLines:   cfg.maxLines,
			slowModes:  newSlowModes(rc.client, cfg.slowMode, log),
			firstSeens: &firstSeen{rc.client},
		},
		mod: moderationConfig{admins: admins, editWindow: cfg.editWindow, perMin: cfg.rateMod},
		stream: streamConfig{
			retry:        2 * time.Second,
			pooled:       cfg.streamMode == "pooled",
			replay:       broker.ReplayLimits{Count: cfg.replayMax, Bytes: cfg.replayMaxBytes},
			writeTimeout: cfg.writeTimeout,
		},
	}
	handler := newServer(d)

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	// The private listener of metrics and pprof, never the public one.
	var mln net.Listener
	if cfg.metricsAddr != "" {
		if mln, err = net.Listen("tcp", cfg.metricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("-metrics-addr: listen on %s: %w", cfg.metricsAddr, err)
		}
	}

	if cfg.connsPerAddr > 0 {
		ln = newAddrConnLimit(ln, cfg.connsPerAddr, proxies, cfg.tlsCert != "", log, func() { m.limit(limitConnsAddr) })
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // streams clear it; see serveGoroutine
		WriteTimeout:      30 * time.Second, // streams use per-write deadlines instead
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(cfg.h2c)
	srv.Protocols = &protocols

	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	brokerDone := make(chan struct{})
	publisherDone := make(chan struct{})
	go func() { defer close(brokerDone); b.Run(brokerCtx, hubSink{h, md}) }()
	go func() { defer close(publisherDone); b.RunPublisher(brokerCtx) }()
	metricsDone := make(chan struct{})
	if mln != nil {
		log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
		go func() { defer close(metricsDone); serveMetrics(brokerCtx, mln, m, log) }()
	} else {
		close(metricsDone)
	}
	// Presence stops first at shutdown, before the streams end: clients
	// reconnect to another instance, and their departures from this one
	// must not be announced as leaves (expiry covers those who do not
	// come back).
	presenceCtx, stopPresence := context.WithCancel(brokerCtx)
	defer stopPresence()
	presenceDone := make(chan struct{})
	go func() { defer close(presenceDone); pres.Run(presenceCtx) }()
	slotsDone := make(chan struct{})
	go func() { defer close(slotsDone); slots.run(brokerCtx) }()
	claimsDone := make(chan struct{})
	go func() { defer close(claimsDone); runOnlineClaims(presenceCtx, d, online, log) }()
	defer func() { stopPresence(); <-claimsDone }()

	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	log.Info("chat is ready", "url", scheme+"://"+ln.Addr().String(), "redis", rc.kind,
		"session_secret", map[bool]string{true: "shared through redis", false: fmt.Sprintf("%d configured", len(secrets))}[shared])

	serveErr := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			serveErr <- srv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-serveErr:
		stopBroker()
		<-brokerDone
		<-publisherDone
		<-presenceDone
		<-slotsDone
		<-metricsDone
		h.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: ending streams, finishing requests")
	stopPresence()
	<-presenceDone
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	streamsDone := make(chan struct{})
	srv.RegisterOnShutdown(func() { h.Shutdown(sctx); close(streamsDone) })
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete", "err", err)
		srv.Close()
	}
	<-streamsDone
	stopBroker()
	<-brokerDone
	<-publisherDone
	<-slotsDone
	<-metricsDone
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
