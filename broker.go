package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultRoom is the tutorial's one room; its pub/sub channel is literally "chat".
const defaultRoom = "chat"

// publishScript appends a message to the room's capped history stream and
// publishes it, atomically, so live order equals history order everywhere.
// The published payload is "<id> <body>". ARGV[4] is PUBLISH, or SPUBLISH on
// a cluster (the channel hashes to the same slot as the keys' hash tag).
//
// KEYS[2] makes it idempotent: a publish that is run again with the same
// key within ARGV[5] seconds (go-redis retrying after a connection broke
// mid-reply, or a user resending a message whose answer was lost) returns
// the first run's ID instead of storing the message twice.
var publishScript = redis.NewScript(`
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
redis.call(ARGV[4], ARGV[3], id .. ' ' .. ARGV[2])
redis.call('SET', KEYS[2], id, 'EX', ARGV[5])
return id
`)

// idempotencyTTL is how long a publish's idempotency key is remembered.
const idempotencyTTL = 10 * time.Minute

// idempotencyKey is the Redis key remembering the publish identified by
// token; in the room's hash slot, beside its history.
func idempotencyKey(room, token string) string { return "chat:{" + room + "}:sent:" + token }

// probePrefix marks the broker's own health probes on a room channel;
// logoutPrefix announces a session that ended, so every instance closes
// its streams.
const (
	probePrefix  = "probe:"
	logoutPrefix = "logout:"
)

func loggedOutKey(sid string) string { return "chat:logged-out:" + sid }

// EndSession records that the session sid logged out (until its cookie
// would have expired) and tells every instance to close its streams.
func (b *broker) EndSession(ctx context.Context, sid string, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	if err := b.rdb.Set(ctx, loggedOutKey(sid), 1, ttl).Err(); err != nil {
		return fmt.Errorf("record logout: %w", err)
	}
	if err := b.publishRaw(ctx, channel(defaultRoom), logoutPrefix+sid); err != nil {
		return fmt.Errorf("announce logout: %w", err)
	}
	return nil
}

// LoggedOut reports whether the session sid has logged out.
func (b *broker) LoggedOut(ctx context.Context, sid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	n, err := b.rdb.Exists(ctx, loggedOutKey(sid)).Result()
	if err != nil {
		return false, fmt.Errorf("check logout: %w", err)
	}
	return n > 0, nil
}

// publishRaw publishes a control payload (not a chat message) on ch.
func (b *broker) publishRaw(ctx context.Context, ch, payload string) error {
	if b.cfg.sharded {
		return b.rdb.SPublish(ctx, ch, payload).Err()
	}
	return b.rdb.Publish(ctx, ch, payload).Err()
}

// errRedisUnavailable wraps failures to reach Redis, which are the server's
// problem, not the client's: answered with 503.
var errRedisUnavailable = errors.New("the chat store is unavailable")

// errNotReplicated: the message was stored and published, but fewer
// replicas than required acknowledged it in time, so a failover could lose it.
var errNotReplicated = errors.New("the message was stored but not confirmed by enough replicas")

// brokerConfig is the broker's tuning; every field must be set.
type brokerConfig struct {
	historyLen    int64         // messages kept per room (approximately; MAXLEN ~)
	sharded       bool          // Redis Cluster: SSUBSCRIBE/SPUBLISH
	waitReplicas  int           // >0: a publish waits for this many replica acknowledgements
	waitTimeout   time.Duration // how long to wait for them
	probeInterval time.Duration
	probeTimeout  time.Duration
	opTimeout     time.Duration // one Redis command
}

// broker connects rooms to Redis: publishing, history, and the process's one
// subscription, which it keeps alive and gap-free.
type broker struct {
	rdb      redis.UniversalClient
	pub      *publisher
	hub      *hub
	cfg      brokerConfig
	log      *slog.Logger
	instance string
	rooms    []string

	ready atomic.Bool // the subscription is live and its last probe came back
}

func newBroker(rdb redis.UniversalClient, h *hub, cfg brokerConfig, log *slog.Logger) *broker {
	b := make([]byte, 6)
	rand.Read(b)
	return &broker{
		rdb:      rdb,
		pub:      newPublisher(rdb, cfg.opTimeout),
		hub:      h,
		cfg:      cfg,
		log:      log,
		instance: hex.EncodeToString(b),
		rooms:    []string{defaultRoom},
	}
}

// historyKey is the room's stream. The {room} hash tag puts it in the same
// cluster slot as the room's channel (a channel's slot is that of its name).
func historyKey(room string) string { return "chat:{" + room + "}:history" }

// channel is the room's pub/sub channel; the default room's is "chat".
func channel(room string) string { return room }

func (b *broker) pubCommand() string {
	if b.cfg.sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// Publish stores and broadcasts m in room and returns it with its ID. It
// returns only once Redis accepted the message (and, if configured, enough
// replicas acknowledged it). token identifies this message for
// idempotency: publishing again with the same token changes nothing and
// returns the same ID.
func (b *broker) Publish(ctx context.Context, room, token string, m Message) (Message, error) {
	body, err := m.encodeBody()
	if err != nil {
		return Message{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout+b.cfg.waitTimeout)
	defer cancel()
	keys := []string{historyKey(room), idempotencyKey(room, token)}
	args := []any{b.cfg.historyLen, body, channel(room), b.pubCommand(), int(idempotencyTTL.Seconds())}
	var id string
	if b.cfg.waitReplicas > 0 {
		id, err = b.publishAndWait(ctx, keys, args)
	} else {
		id, err = b.pub.publish(ctx, keys, args)
	}
	if err != nil {
		return Message{}, fmt.Errorf("publish message: %w: %w", errRedisUnavailable, err)
	}
	m.ID = id
	return m, nil
}

// publishAndWait runs the script and WAIT on one connection (a pipeline),
// since WAIT counts the acknowledgements of the calling connection's writes.
func (b *broker) publishAndWait(ctx context.Context, keys []string, args []any) (string, error) {
	var run *redis.Cmd
	var wait *redis.Cmd
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		run = publishScript.EvalSha(ctx, p, keys, args...)
		wait = p.Do(ctx, "WAIT", b.cfg.waitReplicas, b.cfg.waitTimeout.Milliseconds())
		return nil
	})
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := publishScript.Load(ctx, b.rdb).Err(); err != nil {
			return "", err
		}
		return b.publishAndWait(ctx, keys, args)
	}
	if err != nil {
		return "", err
	}
	id, err := run.Text()
	if err != nil {
		return "", err
	}
	n, err := wait.Int64()
	if err != nil {
		return "", fmt.Errorf("wait for replicas: %w", err)
	}
	if n < int64(b.cfg.waitReplicas) {
		return "", fmt.Errorf("%w: message %s reached %d of %d replicas in %v", errNotReplicated, id, n, b.cfg.waitReplicas, b.cfg.waitTimeout)
	}
	return id, nil
}

// storedMessage is a history entry: its ID and stored body.
type storedMessage struct {
	id   streamID
	body []byte
}

func toStored(xs []redis.XMessage) ([]storedMessage, error) {
	out := make([]storedMessage, 0, len(xs))
	for _, x := range xs {
		id, err := parseStreamID(x.ID)
		if err != nil {
			return nil, err
		}
		body, _ := x.Values["m"].(string)
		out = append(out, storedMessage{id: id, body: []byte(body)})
	}
	return out, nil
}

// Recent returns the last n messages of room, oldest first.
func (b *broker) Recent(ctx context.Context, room string, n int64) ([]Message, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	xs, err := b.rdb.XRevRangeN(ctx, historyKey(room), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read recent messages: %w: %w", errRedisUnavailable, err)
	}
	out := make([]Message, 0, len(xs))
	for i := len(xs) - 1; i >= 0; i-- {
		body, _ := xs[i].Values["m"].(string)
		m, err := decodeMessage(xs[i].ID, []byte(body))
		if err != nil {
			b.log.Warn("skipping unreadable history entry", "id", xs[i].ID, "err", err)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// After returns up to n messages of room newer than after, oldest first, and
// whether history older than the first returned message was trimmed away
// although the client had not seen it.
func (b *broker) After(ctx context.Context, room string, after streamID, n int64) (msgs []storedMessage, trimmed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	var rng *redis.XMessageSliceCmd
	var first *redis.XMessageSliceCmd
	var length *redis.IntCmd
	key := historyKey(room)
	start := "-"
	if !after.isZero() {
		start = "(" + after.String()
	}
	_, err = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rng = p.XRangeN(ctx, key, start, "+", n)
		first = p.XRangeN(ctx, key, "-", "+", 1)
		length = p.XLen(ctx, key)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read history: %w: %w", errRedisUnavailable, err)
	}
	msgs, err = toStored(rng.Val())
	if err != nil {
		return nil, false, err
	}
	// MAXLEN ~ only trims whole nodes, so a trimmed stream is at least
	// historyLen long; an ID older than the oldest kept one then means loss.
	if f := first.Val(); len(f) == 1 && length.Val() >= b.cfg.historyLen {
		oldest, err := parseStreamID(f[0].ID)
		if err == nil && oldest.after(after) {
			trimmed = true
		}
	}
	return msgs, trimmed, nil
}

// Ready reports whether delivery through Redis works right now: the
// subscription is live and its last probe came back.
func (b *broker) Ready() bool { return b.ready.Load() }

// RunPublisher serves Publish until ctx ends; stop publishing first.
func (b *broker) RunPublisher(ctx context.Context) { b.pub.run(ctx) }

// Run keeps the process's one subscription to every room's channel alive
// until ctx ends, feeding the hub. On every (re)subscription it fills the gap
// from history, and it re-subscribes when its own probes stop coming back.
func (b *broker) Run(ctx context.Context) {
	// Start from the newest stored message: older ones are history, which
	// streams replay themselves.
	last := make(map[string]streamID, len(b.rooms)) // newest ID delivered per room
	for _, room := range b.rooms {
		for {
			id, err := b.newest(ctx, room)
			if err == nil {
				last[room] = id
				break
			}
			b.log.Warn("cannot read history position; retrying", "room", room, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	for ctx.Err() == nil {
		b.subscribeOnce(ctx, last)
		b.ready.Store(false)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // don't spin against a dead Redis
		}
	}
}

// newest returns the ID of room's newest stored message (zero when empty).
func (b *broker) newest(ctx context.Context, room string) (streamID, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.opTimeout)
	defer cancel()
	xs, err := b.rdb.XRevRangeN(ctx, historyKey(room), "+", "-", 1).Result()
	if err != nil || len(xs) == 0 {
		return streamID{}, err
	}
	return parseStreamID(xs[0].ID)
}

// subscribeOnce runs one subscription until it fails its probe or ctx ends.
func (b *broker) subscribeOnce(ctx context.Context, last map[string]streamID) {
	chans := make([]string, len(b.rooms))
	for i, r := range b.rooms {
		chans[i] = channel(r)
	}
	var ps *redis.PubSub
	if b.cfg.sharded {
		ps = b.rdb.SSubscribe(ctx, chans...)
	} else {
		ps = b.rdb.Subscribe(ctx, chans...)
	}
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(4096))

	probes := time.NewTicker(b.cfg.probeInterval)
	defer probes.Stop()
	var (
		nonce    string    // the outstanding probe, "" when none
		sentAt   time.Time // when it was sent
		needFill = true    // a gap fill is due (it failed, or nothing confirmed yet)
	)
	sendProbe := func() {
		nonce = probePrefix + b.instance + ":" + rand.Text()
		sentAt = time.Now()
		go func(payload string) {
			pctx, cancel := context.WithTimeout(ctx, b.cfg.probeTimeout)
			defer cancel()
			if err := b.publishRaw(pctx, chans[0], payload); err != nil && ctx.Err() == nil {
				b.log.Debug("probe publish failed", "err", err)
			}
		}(nonce)
	}

	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
					continue
				}
				b.log.Info("subscribed", "channel", m.Channel)
				needFill = !b.fill(ctx, last)
				sendProbe() // confirm the path end to end before reporting ready
			case *redis.Message:
				if strings.HasPrefix(m.Payload, probePrefix) {
					if m.Payload == nonce {
						nonce = ""
						if needFill {
							needFill = !b.fill(ctx, last)
						}
						if !needFill && !b.ready.Load() {
							b.ready.Store(true)
							b.hub.setDegraded(false)
							b.log.Info("delivery through redis confirmed", "probe_ms", time.Since(sentAt).Milliseconds())
						}
					}
					continue
				}
				if sid, ok := strings.CutPrefix(m.Payload, logoutPrefix); ok {
					b.hub.endSession(sid)
					continue
				}
				b.deliver(roomOfChannel(m.Channel), m.Payload, last)
			}
		case <-probes.C:
			if nonce == "" {
				sendProbe()
				continue
			}
			if time.Since(sentAt) > b.cfg.probeTimeout {
				b.log.Warn("subscription probe did not come back; re-subscribing", "waited", time.Since(sentAt).Round(time.Millisecond))
				b.ready.Store(false)
				b.hub.setDegraded(true)
				return
			}
		}
	}
}

func roomOfChannel(ch string) string { return ch }

// deliver turns a published payload into an event and broadcasts it, unless
// a gap fill already delivered it.
func (b *broker) deliver(room, payload string, last map[string]streamID) {
	ids, body, ok := strings.Cut(payload, " ")
	id, err := parseStreamID(ids)
	if !ok || err != nil {
		b.log.Warn("ignoring malformed message on channel", "room", room, "payload", truncate(payload, 80))
		return
	}
	if !id.after(last[room]) {
		return // already delivered by a gap fill
	}
	last[room] = id
	b.hub.broadcast(room, messageEvent(id, []byte(body)))
}

// fill delivers, for every room, what was stored after the last delivered
// message: whatever was published while the subscription was down. It
// reports whether it succeeded.
func (b *broker) fill(ctx context.Context, last map[string]streamID) bool {
	const page = 1000
	for _, room := range b.rooms {
		for {
			// A zero ID reads from the beginning: the stream was empty when
			// this process started, so everything in it is new.
			msgs, _, err := b.After(ctx, room, last[room], page)
			if err != nil {
				b.log.Warn("gap fill failed; will retry", "room", room, "err", err)
				return false
			}
			for _, m := range msgs {
				last[room] = m.id
				b.hub.broadcast(room, messageEvent(m.id, m.body))
			}
			if len(msgs) > 0 {
				b.log.Info("gap filled from history", "room", room, "messages", len(msgs))
			}
			if len(msgs) < page {
				break
			}
		}
	}
	return true
}
