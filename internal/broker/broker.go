// Package broker connects the chat's rooms to Redis: it publishes messages
// (one Lua script: sequence number, capped history, pub/sub), reads history
// for pages and replays, and keeps the process's one subscription alive and
// gap-free, delivering what it receives to a Sink.
//
// The order everything rests on: a message is appended to the room's
// history (a Redis stream) and published in the same script, so history
// order is publish order on every instance. Each message carries the room's
// sequence number, so a subscriber that sees a jump knows it missed
// something and fills the gap from history before delivering anything newer.
// History is the truth: nothing read from the channel moves a room's
// position past what history holds unless it is the exact next message.
package broker

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// ErrUnavailable wraps failures to reach Redis, which are the server's
// problem, not the client's: answered with 503.
var ErrUnavailable = errors.New("the chat store is unavailable")

// ErrNotReplicated: the message was stored and published, but fewer
// replicas than required acknowledged it in time, so a failover could lose it.
var ErrNotReplicated = errors.New("the message was stored but not confirmed by enough replicas")

// Config is the broker's tuning; every field must be set.
type Config struct {
	HistoryLen    int64         // messages kept per room (approximately: MAXLEN ~)
	Sharded       bool          // Redis Cluster: SSUBSCRIBE/SPUBLISH
	WaitReplicas  int           // >0: a publish waits for this many replica acknowledgements
	WaitTimeout   time.Duration // how long to wait for them
	ProbeInterval time.Duration // how often the subscription is probed end to end
	ProbeTimeout  time.Duration // a probe not back by then re-establishes the subscription
	OpTimeout     time.Duration // one Redis command
	Linger        time.Duration // a room no local stream wants stays subscribed this long
	RoomTTL       time.Duration // a room other than the default one is deleted this long after its last message (0: never)

	// ProbeRTT, if set (the one optional field), is called with the round
	// trip of each probe that came back: publish → received on this
	// instance's subscription. It must not block.
	ProbeRTT func(time.Duration)
}

// Broker is the process's link to Redis. The zero value is not valid: use New.
type Broker struct {
	rdb      redis.UniversalClient
	pub      *publisher
	cfg      Config
	log      *slog.Logger
	instance string // tells this process's probes from other instances'

	ready atomic.Bool // the subscription is live and its last probe came back
	stats counters

	// pos is each subscribed room's position: the newest history entry
	// delivered to the sink. Owned by the Run goroutine (and the
	// subscription it runs); it survives re-subscriptions and recovered
	// panics.
	pos map[string]position

	mu      sync.Mutex           // guards table and pending
	table   map[string]*interest // rooms local streams want, or lingering
	pending []pendingRoom        // rooms new to table, not yet seen by Run
	wake    chan struct{}        // tells Run about pending (buffered 1)
	touched map[string]time.Time // rooms this process put in the active list lately
}

// position is where delivery of a room stands: the newest history entry
// delivered (or skipped as malformed) and its sequence number (0: unknown,
// e.g. an entry written by an older version).
type position struct {
	id  chat.ID
	seq uint64
}

// New returns a broker for rdb. Run and RunPublisher make it work.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) *Broker {
	return &Broker{
		rdb:      rdb,
		pub:      newPublisher(rdb, cfg.OpTimeout),
		cfg:      cfg,
		log:      log,
		instance: rand.Text()[:12],
		pos:      make(map[string]position),
		table:    make(map[string]*interest),
		wake:     make(chan struct{}, 1),
		touched:  make(map[string]time.Time),
	}
}

// Keys. The {room} hash tag puts every key of a room in the same cluster
// slot as the room's channel (a channel's slot is that of its name), so the
// publish script touches one slot.
func historyKey(room string) string              { return "chat:{" + room + "}:history" }
func seqKey(room string) string                  { return "chat:{" + room + "}:seq" }
func sentKey(room, token string) string          { return "chat:{" + room + "}:sent:" + token }
func loggedOutKey(sid string) string             { return "chat:logged-out:" + sid }
func probePayload(instance, nonce string) string { return probePrefix + instance + ":" + nonce }

// Channels. The default room's is literally "chat" (the tutorial's); any
// other room's is "chat:{room}", in its keys' slot. The control channel,
// always subscribed, carries logouts and probes.
const controlChannel = "chat:control"

func channel(room string) string {
	if room == chat.DefaultRoom {
		return chat.DefaultRoom
	}
	return "chat:{" + room + "}"
}

// roomOfChannel is channel's inverse.
func roomOfChannel(ch string) (string, bool) {
	if ch == chat.DefaultRoom {
		return ch, true
	}
	if r, ok := strings.CutPrefix(ch, "chat:{"); ok {
		if r, ok = strings.CutSuffix(r, "}"); ok && chat.ValidRoom(r) {
			return r, true
		}
	}
	return "", false
}

// Channel returns room's pub/sub channel (for tests and tools).
func Channel(room string) string { return channel(room) }

// Control payloads never start with a digit, so none can be mistaken for a
// message payload: the broker's own health probes and logout announcements
// (so every instance closes the session's streams) on the control channel,
// probes and signals ("presence:<json>", "typing:<json>") on room channels.
const (
	probePrefix    = "probe:"
	logoutPrefix   = "logout:"
	endPrefix      = "end:" // "end:<reason>:<sid>": a session ended by a moderator
	presencePrefix = "presence"
	typingPrefix   = "typing"
)

// Ready reports whether delivery through Redis works right now: the
// subscription is live, caught up with history, and its last probe came back.
func (b *Broker) Ready() bool { return b.ready.Load() }
