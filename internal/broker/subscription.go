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
	// EndSession: the session sid ended, on some instance, for reason
	// (EndLoggedOut, EndBanned, EndKicked).
	EndSession(sid, reason string)
	// Signal hands over a presence or typing signal of a room (validated).
	Signal(s chat.Signal)
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

// Run keeps the process's subscription alive until ctx ends, delivering to
// sink: the control channel (logouts, probes) always, and the channel of
// every room some local stream Acquired. Every (re)subscription of a room
// first fills the gap from history; a live message that is not the exact
// next one fills from history too; live delivery never overtakes a fill:
// when a fill fails the subscription is dropped and re-established, which
// fills again.
func (b *Broker) Run(ctx context.Context, sink Sink) {
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

// subConn is one pub/sub connection of a subscription: the only one outside
// a cluster; in a cluster one per master that serves a wanted channel (a
// sharded channel is served by the master of its slot).
type subConn struct {
	node   string // the master's address; "" outside a cluster
	ps     *redis.PubSub
	chans  map[string]bool // channels subscribed on it
	nonce  string          // the outstanding probe, "" when none
	sentAt time.Time       // when it was sent
	live   bool            // a subscription on it was confirmed
}

type connMsg struct {
	c *subConn
	m any
}

// subscription is one generation of the process's subscription: its
// connections, and the channel their messages are merged into (each
// room's messages come on one connection, so per room they stay in order).
type subscription struct {
	b     *Broker
	sink  Sink
	conns map[string]*subConn
	where map[string]*subConn // channel → its connection
	in    chan connMsg
	done  chan struct{}
}

func (s *subscription) close() {
	close(s.done)
	for _, c := range s.conns {
		c.ps.Close()
	}
}

// add subscribes ch, on the connection to the master of its slot.
func (s *subscription) add(ctx context.Context, ch string) error {
	if s.where[ch] != nil {
		return nil
	}
	b := s.b
	node := ""
	var nodeClient *redis.Client
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			return fmt.Errorf("find the master of %s: %w", ch, err)
		}
		nodeClient, node = n, n.Options().Addr
	}
	c := s.conns[node]
	var err error
	switch {
	case c != nil && b.cfg.Sharded:
		err = c.ps.SSubscribe(ctx, ch)
	case c != nil:
		err = c.ps.Subscribe(ctx, ch)
	default:
		c = &subConn{node: node, chans: make(map[string]bool)}
		switch {
		case nodeClient != nil && b.cfg.Sharded:
			c.ps = nodeClient.SSubscribe(ctx, ch)
		case b.cfg.Sharded:
			c.ps = b.rdb.SSubscribe(ctx, ch)
		default:
			c.ps = b.rdb.Subscribe(ctx, ch)
		}
		s.conns[node] = c
		msgs := c.ps.ChannelWithSubscriptions(redis.WithChannelSize(4096))
		go func() {
			for m := range msgs {
				select {
				case s.in <- connMsg{c, m}:
				case <-s.done:
					return
				}
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", ch, err)
	}
	c.chans[ch] = true
	s.where[ch] = c
	return nil
}

// drop unsubscribes ch; a connection left with no channel is closed.
func (s *subscription) drop(ctx context.Context, ch string) error {
	c := s.where[ch]
	if c == nil {
		return nil
	}
	delete(s.where, ch)
	delete(c.chans, ch)
	if len(c.chans) == 0 {
		delete(s.conns, c.node)
		return c.ps.Close()
	}
	if s.b.cfg.Sharded {
		return c.ps.SUnsubscribe(ctx, ch)
	}
	return c.ps.Unsubscribe(ctx, ch)
}

// sendProbe publishes a probe on one of c's channels, to confirm the path
// end to end.
func (s *subscription) sendProbe(ctx context.Context, c *subConn) {
	ch := controlChannel
	if !c.chans[ch] {
		for other := range c.chans {
			ch = other
			break
		}
	}
	b := s.b
	c.nonce = probePayload(b.instance, rand.Text())
	c.sentAt = time.Now()
	go func(payload string) {
		pctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
		defer cancel()
		if err := b.publishRaw(pctx, ch, payload); err != nil && ctx.Err() == nil {
			b.log.Debug("probe publish failed", "err", err)
		}
	}(c.nonce)
}

// lingerTick is how often rooms nobody holds any more are looked for.
func (b *Broker) lingerTick() time.Duration {
	return min(max(b.cfg.Linger/4, 20*time.Millisecond), 5*time.Second)
}

// subscribeOnce runs one subscription until it fails (a probe does not
// come back, a gap fill fails, a channel is dropped by Redis, the loop
// panics) or ctx ends.
func (b *Broker) subscribeOnce(ctx context.Context, sink Sink) {
	s := &subscription{b: b, sink: sink, conns: make(map[string]*subConn), where: make(map[string]*subConn),
		in: make(chan connMsg, 4096), done: make(chan struct{})}
	defer s.close()
	defer func() {
		// A bug triggered by one payload must not take every instance
		// down: the positions live in b.pos, so the next subscription
		// fills from where this one stopped.
		if r := recover(); r != nil {
			b.stats.panics.Add(1)
			b.log.Error("panic in the subscription loop; re-subscribing", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	b.adopt()
	chans := []string{controlChannel}
	for room := range b.pos {
		chans = append(chans, channel(room))
	}
	for _, ch := range chans {
		if err := s.add(ctx, ch); err != nil {
			b.log.Warn("subscribing failed; retrying", "err", err)
			return
		}
	}

	probes := time.NewTicker(b.cfg.ProbeInterval)
	defer probes.Stop()
	linger := time.NewTicker(b.lingerTick())
	defer linger.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
			for _, room := range b.adopt() {
				if err := s.add(ctx, channel(room)); err != nil {
					b.log.Warn("subscribing failed; re-subscribing", "room", room, "err", err)
					return
				}
			}
		case <-linger.C:
			for _, room := range b.expired(time.Now()) {
				delete(b.pos, room)
				if err := s.drop(ctx, channel(room)); err != nil {
					b.log.Warn("unsubscribing failed; re-subscribing", "room", room, "err", err)
					return
				}
				b.log.Debug("unsubscribed: no local stream wants the room", "room", room)
			}
		case cm := <-s.in:
			if !s.handle(ctx, cm.c, cm.m) {
				return
			}
		case <-probes.C:
			for _, c := range s.conns {
				switch {
				case !c.live:
				case c.nonce == "":
					s.sendProbe(ctx, c)
				case time.Since(c.sentAt) > b.cfg.ProbeTimeout:
					b.log.Warn("subscription probe did not come back; re-subscribing", "node", c.node, "waited", time.Since(c.sentAt).Round(time.Millisecond))
					b.ready.Store(false)
					sink.SetDegraded(true)
					return
				}
			}
		}
	}
}

// adopt moves the rooms Acquired since the last call into b.pos, at the
// positions Acquire read, and returns them.
func (b *Broker) adopt() []string {
	var rooms []string
	for _, p := range b.takePending() {
		if _, ok := b.pos[p.room]; !ok {
			b.pos[p.room] = p.pos
		}
		rooms = append(rooms, p.room)
	}
	return rooms
}

// handle processes one message of connection c. It reports false when the
// subscription must be re-established.
func (s *subscription) handle(ctx context.Context, c *subConn, msg any) bool {
	b, sink := s.b, s.sink
	switch m := msg.(type) {
	case *redis.Subscription:
		switch m.Kind {
		case "subscribe", "ssubscribe":
			b.log.Debug("subscribed", "channel", m.Channel)
			if room, ok := roomOfChannel(m.Channel); ok {
				if _, wanted := b.pos[room]; wanted {
					// Whatever was published while unsubscribed is in history.
					if !b.fill(ctx, sink, room) {
						return false
					}
				}
			}
			c.live = true
			if c.nonce == "" {
				s.sendProbe(ctx, c) // confirm the path end to end before reporting ready
			}
		case "unsubscribe", "sunsubscribe":
			if s.where[m.Channel] == c {
				// Not asked for: the slot moved to another master (or the
				// server dropped us). Start over, filling from history.
				b.log.Warn("channel dropped by redis; re-subscribing", "channel", m.Channel)
				return false
			}
		}
	case *redis.Message:
		switch {
		case strings.HasPrefix(m.Payload, probePrefix):
			if m.Payload == c.nonce {
				c.nonce = ""
				if b.cfg.ProbeRTT != nil {
					b.cfg.ProbeRTT(time.Since(c.sentAt))
				}
				if !b.ready.Load() {
					b.ready.Store(true)
					sink.SetDegraded(false)
					b.log.Info("delivery through redis confirmed", "probe_ms", time.Since(c.sentAt).Milliseconds())
				}
			}
		case m.Channel == controlChannel:
			if sid, ok := strings.CutPrefix(m.Payload, logoutPrefix); ok {
				sink.EndSession(sid, EndLoggedOut)
			} else if reason, sid, ok := cutEnd(m.Payload); ok {
				sink.EndSession(sid, reason)
			} else {
				b.skipMalformed(controlChannel, "control channel", fmt.Errorf("%w: %q", chat.ErrMalformed, clip(m.Payload, 80)))
			}
		default:
			room, ok := roomOfChannel(m.Channel)
			if !ok {
				b.skipMalformed(m.Channel, "channel", fmt.Errorf("%w: not a room channel", chat.ErrMalformed))
				return true
			}
			return b.receive(ctx, sink, room, m.Payload)
		}
	}
	return true
}

// receive handles one payload from room's channel. It reports false when a
// gap fill it needed failed: the caller must re-subscribe, so that nothing
// newer is delivered before the gap is filled.
func (b *Broker) receive(ctx context.Context, sink Sink, room, payload string) bool {
	if _, ok := b.pos[room]; !ok {
		return true // a room this broker no longer listens to
	}
	if payload != "" && (payload[0] < '0' || payload[0] > '9') {
		kind, data, _ := strings.Cut(payload, ":")
		if kind != presencePrefix && kind != typingPrefix {
			b.skipMalformed(room, "channel", fmt.Errorf("%w: payload %q", chat.ErrMalformed, clip(payload, 80)))
			return b.fill(ctx, sink, room) // as for any payload that is not the next message
		}
		sig, err := chat.DecodeSignal(room, []byte(data))
		if err != nil || (kind == typingPrefix) != (sig.Kind == chat.SignalTyping) {
			b.skipMalformed(room, "channel", fmt.Errorf("%w: signal %q", chat.ErrMalformed, clip(payload, 80)))
			return true
		}
		b.stats.signals.Add(1)
		sink.Signal(sig)
		return true
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

// cutEnd reads a control payload "end:<reason>:<sid>" of a known reason.
func cutEnd(p string) (reason, sid string, ok bool) {
	rest, ok := strings.CutPrefix(p, endPrefix)
	if !ok {
		return "", "", false
	}
	reason, sid, ok = strings.Cut(rest, ":")
	if !ok || sid == "" || (reason != EndBanned && reason != EndKicked && reason != EndLoggedOut) {
		return "", "", false
	}
	return reason, sid, true
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
