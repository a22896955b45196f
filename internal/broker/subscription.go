package broker

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// Sink receives what the subscription delivers. Its methods are called from
// the one goroutine running Run and must not block.
type Sink interface {
	// Deliver hands over the next message of m.Room: per room in history
	// order, each message once.
	Deliver(m chat.Message)
	// SetDegraded reports whether delivery through Redis is broken.
	SetDegraded(degraded bool)
	// EndSession: the session sid logged out, on some instance.
	EndSession(sid string)
}

const (
	fillPage = 1000 // history entries read per round trip of a gap fill
	// maxFutureSkew bounds how far ahead of this process's clock a published
	// ID may be and still be delivered as the next message; anything beyond
	// is checked against history first (a forged or mistyped payload must
	// not move the position into the future and hold back real messages).
	maxFutureSkew = time.Minute
	// resubscribeDelay keeps a failing subscription from spinning against
	// a dead Redis.
	resubscribeDelay = 200 * time.Millisecond
)

// Run keeps the process's one subscription to every room's channel alive
// until ctx ends, delivering to sink. Every (re)subscription first fills the
// gap from history; a live message that is not the exact next one fills from
// history too; live delivery never overtakes a fill: when a fill fails the
// subscription is dropped and re-established, which fills again.
func (b *Broker) Run(ctx context.Context, sink Sink) {
	// Start from the newest stored message: older ones are history, which
	// streams replay themselves.
	for _, room := range b.cfg.Rooms {
		for {
			p, err := b.newest(ctx, room)
			if err == nil {
				b.pos[room] = p
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
	lastReady := time.Now()
	for ctx.Err() == nil {
		b.subscribeOnce(ctx, sink)
		if b.ready.Swap(false) {
			lastReady = time.Now()
		}
		if time.Since(lastReady) > b.cfg.ProbeTimeout {
			sink.SetDegraded(true)
		}
		b.stats.resubscribes.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeDelay):
		}
	}
}

// subscribeOnce runs one subscription until it fails (its probe does not
// come back, a gap fill fails, the loop panics) or ctx ends.
func (b *Broker) subscribeOnce(ctx context.Context, sink Sink) {
	defer func() {
		// A bug triggered by one payload must not take every instance
		// down: the position lives in b.pos, so the next subscription
		// fills from where this one stopped.
		if r := recover(); r != nil {
			b.stats.panics.Add(1)
			b.log.Error("panic in the subscription loop; re-subscribing", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	chans := make([]string, len(b.cfg.Rooms))
	for i, r := range b.cfg.Rooms {
		chans[i] = channel(r)
	}
	var ps *redis.PubSub
	if b.cfg.Sharded {
		ps = b.rdb.SSubscribe(ctx, chans...)
	} else {
		ps = b.rdb.Subscribe(ctx, chans...)
	}
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(4096))

	probes := time.NewTicker(b.cfg.ProbeInterval)
	defer probes.Stop()
	var (
		nonce  string    // the outstanding probe, "" when none
		sentAt time.Time // when it was sent
	)
	sendProbe := func() {
		nonce = probePayload(b.instance, rand.Text())
		sentAt = time.Now()
		go func(payload string) {
			pctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
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
				// Whatever was published while unsubscribed is in history.
				if !b.fill(ctx, sink, roomOfChannel(m.Channel)) {
					return
				}
				sendProbe() // confirm the path end to end before reporting ready
			case *redis.Message:
				switch {
				case strings.HasPrefix(m.Payload, probePrefix):
					if m.Payload == nonce {
						nonce = ""
						if !b.ready.Load() {
							b.ready.Store(true)
							sink.SetDegraded(false)
							b.log.Info("delivery through redis confirmed", "probe_ms", time.Since(sentAt).Milliseconds())
						}
					}
				case strings.HasPrefix(m.Payload, logoutPrefix):
					sink.EndSession(m.Payload[len(logoutPrefix):])
				default:
					if !b.receive(ctx, sink, roomOfChannel(m.Channel), m.Payload) {
						return
					}
				}
			}
		case <-probes.C:
			if nonce == "" {
				sendProbe()
				continue
			}
			if time.Since(sentAt) > b.cfg.ProbeTimeout {
				b.log.Warn("subscription probe did not come back; re-subscribing", "waited", time.Since(sentAt).Round(time.Millisecond))
				b.ready.Store(false)
				sink.SetDegraded(true)
				return
			}
		}
	}
}

// receive handles one payload from room's channel. It reports false when a
// gap fill it needed failed: the caller must re-subscribe, so that nothing
// newer is delivered before the gap is filled.
func (b *Broker) receive(ctx context.Context, sink Sink, room, payload string) bool {
	if _, ok := b.pos[room]; !ok {
		return true // a channel this broker does not serve
	}
	id, seq, body, err := parsePayload(payload)
	if err != nil {
		// Not ours, or an older version's format: history holds whatever
		// real message it announced, so ask history.
		b.skipMalformed(room, "channel", err)
		return b.fill(ctx, sink, room)
	}
	pos := b.pos[room]
	if !id.After(pos.id) {
		b.stats.duplicates.Add(1) // a gap fill delivered it already
		return true
	}
	next := seq == pos.seq+1 && (pos.seq != 0 || pos.id.IsZero())
	if next && id.Ms <= uint64(time.Now().Add(maxFutureSkew).UnixMilli()) {
		m, err := chat.DecodeStored(room, id, seq, []byte(body))
		if err == nil {
			b.pos[room] = position{id: id, seq: seq}
			b.stats.delivered.Add(1)
			sink.Deliver(m)
			return true
		}
		b.skipMalformed(room, "channel", err)
	} else if pos.seq != 0 && seq > pos.seq+1 {
		b.stats.gaps.Add(1)
		b.log.Warn("sequence gap on the channel; filling from history", "room", room, "after", pos.seq, "got", seq)
	}
	return b.fill(ctx, sink, room)
}

// fill delivers what room's history holds after its position. It reports
// whether it succeeded; on failure the position has not moved past anything
// undelivered.
func (b *Broker) fill(ctx context.Context, sink Sink, room string) bool {
	b.stats.fills.Add(1)
	filled := 0
	for {
		pos := b.pos[room]
		es, err := b.readAfter(ctx, room, pos.id, fillPage)
		if err != nil {
			b.stats.fillFailures.Add(1)
			if ctx.Err() == nil {
				b.log.Warn("gap fill failed; re-subscribing", "room", room, "err", err)
			}
			return false
		}
		for _, e := range es {
			pos = position{id: e.id, seq: e.seq}
			b.pos[room] = pos
			m, err := e.decode(room)
			if err != nil {
				b.skipMalformed(room, "history", err)
				continue
			}
			filled++
			b.stats.delivered.Add(1)
			b.stats.filled.Add(1)
			sink.Deliver(m)
		}
		if len(es) < fillPage {
			break
		}
	}
	if filled > 0 {
		b.log.Info("gap filled from history", "room", room, "messages", filled)
	}
	return true
}

// parsePayload splits a published payload "<id> <seq> <body>".
func parsePayload(p string) (id chat.ID, seq uint64, body string, err error) {
	ids, rest, ok1 := strings.Cut(p, " ")
	seqs, body, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return chat.ID{}, 0, "", fmt.Errorf("%w: payload %q is not \"<id> <seq> <body>\"", chat.ErrMalformed, clip(p, 80))
	}
	if id, err = chat.ParseID(ids); err != nil {
		return chat.ID{}, 0, "", fmt.Errorf("%w: payload: %v", chat.ErrMalformed, err)
	}
	if seq, err = strconv.ParseUint(seqs, 10, 64); err != nil || seq == 0 {
		return chat.ID{}, 0, "", fmt.Errorf("%w: payload %q: bad sequence number", chat.ErrMalformed, clip(p, 80))
	}
	return id, seq, body, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// publishRaw publishes a control payload (not a chat message) on ch.
func (b *Broker) publishRaw(ctx context.Context, ch, payload string) error {
	if b.cfg.Sharded {
		return b.rdb.SPublish(ctx, ch, payload).Err()
	}
	return b.rdb.Publish(ctx, ch, payload).Err()
}
