package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisprometheus/v9"
	"github.com/redis/go-redis/v9"

	"chatroom/internal/broker"
	"chatroom/internal/fanout"
)

// metrics are the server's Prometheus metrics, in a registry of their own
// (no global state), served on the private -metrics-addr listener. What the
// hub and the broker count already is read from their Stats at each scrape;
// what happens in the handlers is counted here.
type metrics struct {
	reg            *prometheus.Registry
	published      prometheus.Counter
	publishSeconds prometheus.Histogram
	logins         *prometheus.CounterVec // by result: ok, or the refusal's status
	replays        prometheus.Counter
	replayed       prometheus.Counter
	delivery       prometheus.Histogram
	probeRTT       prometheus.Histogram
	limited        *prometheus.CounterVec // by the limit's kind
	wrongPasswords prometheus.Counter
}

// Kinds of rate-limit refusal (chat_rate_limited_total's label), one per
// limit a client can meet.
const (
	limitLogins         = "logins_addr"      // -rate-logins: logins per address
	limitPasswords      = "passwords"        // -rate-passwords: password tries per name and address
	limitWrongPasswords = "wrong_passwords"  // a name held after wrong passwords
	limitReserves       = "reserves_addr"    // -rate-reserves: names reserved per address a day
	limitHashAddr       = "hashing_addr"     // password checks in progress per address
	limitHashBusy       = "hashing_busy"     // -hash-slots full for -hash-wait (503)
	limitPostsUser      = "posts_user"       // -rate-posts: per user
	limitSlowMode       = "slow_mode"        // a room's slow mode
	limitNewName        = "posts_new_name"   // -new-name-posts
	limitPostsAddr      = "posts_addr"       // -rate-posts-addr
	limitPostsRoomNew   = "posts_room_new"   // the new names' share of -rate-posts-room
	limitPostsRoom      = "posts_room"       // -rate-posts-room
	limitJoins          = "joins"            // -rate-joins
	limitTyping         = "typing"           // -rate-typing
	limitSearches       = "searches"         // searches a minute
	limitModeration     = "moderation"       // -rate-mod
	limitStreamsSession = "streams_session"  // -streams-per-session
	limitStreamsAddr    = "streams_addr"     // -streams-per-addr
	limitConnsAddr      = "connections_addr" // -conns-per-addr (connection closed at accept)
)

// limitKinds are all the kinds above.
func limitKinds() []string {
	return []string{limitLogins, limitPasswords, limitWrongPasswords, limitReserves, limitHashAddr,
		limitHashBusy, limitPostsUser, limitSlowMode, limitNewName, limitPostsAddr, limitPostsRoomNew, limitPostsRoom,
		limitJoins, limitTyping, limitSearches, limitModeration, limitStreamsSession, limitStreamsAddr, limitConnsAddr}
}

// newMetrics makes the metrics of a server using rdb; watch adds the hub's
// and the broker's once they exist.
func newMetrics(rdb redis.UniversalClient) *metrics {
	// From a loopback delivery (sub-millisecond) to a stream held up by a
	// slow client or a Redis failover (seconds).
	latencyBuckets := []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_messages_published_total",
			Help: "Messages accepted by this instance and stored (a post answered 204 or 303)."}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_publish_seconds",
			Help:    "Time to store and publish one accepted message in Redis.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_logins_total",
			Help: "Login attempts by result: ok, or the HTTP status of the refusal (401 a wrong or missing password, 409 a look-alike, 429 a limit)."}, []string{"result"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_replays_total",
			Help: "Streams that started with a replay of stored messages (a resume)."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_replayed_events_total",
			Help: "Messages written by replays."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_delivery_seconds",
			Help:    "Publish → write: per completed write to a stream that carried messages, the time from the oldest one's publish (on the publishing instance's clock) to the write's end.",
			Buckets: latencyBuckets}),
		probeRTT: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_probe_rtt_seconds",
			Help:    "Round trip of the subscription's health probe: published to Redis, received back on this instance's subscription.",
			Buckets: latencyBuckets}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_rate_limited_total",
			Help: "Requests refused by a rate or abuse limit (429, or 503 when password checking is busy; connections closed at accept), by kind."}, []string{"kind"}),
		wrongPasswords: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_password_failures_total",
			Help: "Password checks of a reserved name that found the password wrong."}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		redisprometheus.NewCollector("chat", "redis", rdb),
		m.published, m.publishSeconds, m.logins, m.replays, m.replayed,
		m.delivery, m.probeRTT, m.limited, m.wrongPasswords,
	)
	// Every kind from the start, so that a dashboard sees 0, not nothing.
	for _, kind := range limitKinds() {
		m.limited.WithLabelValues(kind)
	}
	return m
}

// watch adds the hub's and the broker's counters, read at each scrape.
func (m *metrics) watch(hub *fanout.Hub, b *broker.Broker) {
	m.reg.MustRegister(newStatsCollector(hub, b))
}

// login counts one login attempt that ended with status.
func (m *metrics) login(status int) {
	result := "ok"
	if status >= 400 {
		result = strconv.Itoa(status)
	}
	m.logins.WithLabelValues(result).Inc()
}

// limit counts one refusal by the limit of kind.
func (m *metrics) limit(kind string) { m.limited.WithLabelValues(kind).Inc() }

// wrongPassword counts one password check that failed.
func (m *metrics) wrongPassword() { m.wrongPasswords.Inc() }

// delivered is the hub's Latency hook.
func (m *metrics) delivered(d time.Duration) { m.delivery.Observe(d.Seconds()) }

// probed is the broker's ProbeRTT hook.
func (m *metrics) probed(d time.Duration) { m.probeRTT.Observe(d.Seconds()) }

// published counts one stored message and how long storing took.
func (m *metrics) publishedIn(d time.Duration) {
	m.published.Inc()
	m.publishSeconds.Observe(d.Seconds())
}

// streamClosed is the hub's Closed hook for the metrics.
func (m *metrics) streamClosed(c fanout.Closed) {
	if c.Replayed > 0 {
		m.replays.Inc()
		m.replayed.Add(float64(c.Replayed))
	}
}

// statsCollector reads the hub's and the broker's counters at each scrape.
type statsCollector struct {
	hub    *fanout.Hub
	broker *broker.Broker

	streams, rooms, delivered, closes, brokerEvents, ready *prometheus.Desc
}

func newStatsCollector(hub *fanout.Hub, b *broker.Broker) statsCollector {
	return statsCollector{hub: hub, broker: b,
		streams:   prometheus.NewDesc("chat_streams_open", "Open streams on this instance, by serving mode.", []string{"mode"}, nil),
		rooms:     prometheus.NewDesc("chat_rooms_local", "Rooms with at least one open stream on this instance.", nil, nil),
		delivered: prometheus.NewDesc("chat_events_delivered_total", "Events queued to streams (one per stream per event).", nil, nil),
		closes:    prometheus.NewDesc("chat_stream_closes_total", "Streams ended, by reason (slow and stalled are evictions).", []string{"reason"}, nil),
		brokerEvents: prometheus.NewDesc("chat_broker_events_total", "The broker's counts since start, by kind: delivered, malformed, duplicates, gaps (sequence gaps seen), fills (gap fills), fill_failures, filled, resubscribes, panics, signals.",
			[]string{"kind"}, nil),
		ready: prometheus.NewDesc("chat_ready", "1 when delivery works end to end (the probe came back), else 0.", nil, nil),
	}
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.streams, c.rooms, c.delivered, c.closes, c.brokerEvents, c.ready} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.hub.Stats()
	ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(st.Pooled), fanout.Pooled.String())
	ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(st.Goroutine), fanout.Goroutine.String())
	ch <- prometheus.MustNewConstMetric(c.rooms, prometheus.GaugeValue, float64(st.Rooms))
	ch <- prometheus.MustNewConstMetric(c.delivered, prometheus.CounterValue, float64(st.Delivered))
	for reason, n := range st.Closes {
		ch <- prometheus.MustNewConstMetric(c.closes, prometheus.CounterValue, float64(n), reason.String())
	}
	bs := c.broker.Stats()
	for kind, n := range map[string]int64{"delivered": bs.Delivered, "malformed": bs.Malformed, "duplicates": bs.Duplicates,
		"gaps": bs.Gaps, "fills": bs.Fills, "fill_failures": bs.FillFailures, "filled": bs.Filled,
		"resubscribes": bs.Resubscribes, "panics": bs.Panics, "signals": bs.Signals} {
		ch <- prometheus.MustNewConstMetric(c.brokerEvents, prometheus.CounterValue, float64(n), kind)
	}
	ready := 0.0
	if c.broker.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
}

// serveMetrics serves /metrics and net/http/pprof on ln until ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, m *metrics, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics listener", "err", err)
	}
}
