package main

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/fanout"
)

// streamSlotTTL is how long a place held by an open stream stays counted
// without being refreshed: the holding instance refreshes it every third of
// this, so only a crashed instance's places expire, within this long.
const streamSlotTTL = 30 * time.Second

// errAddrStreams is the 429 sentence of a client address at its cap.
var errAddrStreams = errors.New("too many open chat streams from your address; close some chat windows and try again later")

// slotScript takes a place in the sorted set KEYS[1] for the stream
// ARGV[1], unless the set is full: the places of other instances (members
// not starting with ARGV[2], unexpired) plus ARGV[3], the places this
// instance counts itself (its open streams, without the closed ones whose
// removal is still on its way), reach the limit ARGV[4]. A place expires
// ARGV[5] ms after it was taken or refreshed, on Redis's clock. Returns 1
// when taken, 0 when full.
var slotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = 0
local prefix = ARGV[2]
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #prefix) ~= prefix then others = others + 1 end
end
if others + tonumber(ARGV[3]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// refreshScript moves the places ARGV[2..] of KEYS[1] to expire ARGV[1] ms
// from now (re-adding one that expired while its stream is still open).
var refreshScript = redis.NewScript(`
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], at, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// streamSlots caps open streams per login and per client address over all
// instances sharing one Redis. Each limited thing (a session, an address)
// is a sorted set of the streams holding a place in it, scored by when the
// place expires; the instance holding a stream refreshes its places (run),
// removes them when the stream ends, and a crashed instance's places
// expire after streamSlotTTL.
type streamSlots struct {
	rdb        redis.UniversalClient
	log        *slog.Logger
	instance   string // prefix of this instance's members
	perSession int    // 0: no cap
	perAddr    int    // 0: no cap
	ttl        time.Duration

	mu    sync.Mutex          // guards the fields below
	next  uint64              // the next member number
	held  map[string][]string // open stream's member -> the keys it has a place in
	local map[string]int      // key -> places this instance holds in it
	gone  map[string][]string // key -> members released, not yet removed from Redis
	wake  chan struct{}       // capacity 1: gone has something
}

func newStreamSlots(rdb redis.UniversalClient, perSession, perAddr int, log *slog.Logger) *streamSlots {
	return &streamSlots{
		rdb: rdb, log: log, perSession: perSession, perAddr: perAddr, ttl: streamSlotTTL,
		instance: rand.Text()[:12] + ":",
		held:     map[string][]string{},
		local:    map[string]int{},
		gone:     map[string][]string{},
		wake:     make(chan struct{}, 1),
	}
}

func sessionSlotKey(sid string) string        { return "chat:streams:session:" + sid }
func addrSlotKey(addr string) string          { return "chat:streams:addr:" + addr }
func (s *streamSlots) enabled() bool          { return s != nil && (s.perSession > 0 || s.perAddr > 0) }
func (s *streamSlots) member(n uint64) string { return s.instance + strconv.FormatUint(n, 36) }

// acquire takes a place for one more stream of session from addr.
// localSession is the session's other open streams in this process (the
// hub's count, which leaves out streams already found closed). It returns
// fanout.ErrSessionStreams or errAddrStreams when a cap is reached, and the
// function that gives the places back when the stream ends (it never
// blocks: Redis is told by run).
func (s *streamSlots) acquire(ctx context.Context, session, addr string, localSession int) (func(), error) {
	if !s.enabled() {
		return func() {}, nil
	}
	type want struct {
		key   string
		limit int
		local func() int
		full  error
	}
	var wants []want
	if s.perAddr > 0 {
		k := addrSlotKey(addr)
		wants = append(wants, want{k, s.perAddr, func() int { return s.localCount(k) }, errAddrStreams})
	}
	if s.perSession > 0 {
		wants = append(wants, want{sessionSlotKey(session), s.perSession, func() int { return localSession }, fanout.ErrSessionStreams})
	}
	s.mu.Lock()
	s.next++
	m := s.member(s.next)
	s.mu.Unlock()
	var taken []string
	release := func() { s.release(m, taken) }
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, w := range wants {
		ok, err := slotScript.Run(ctx, s.rdb, []string{w.key}, m, s.instance, w.local(), w.limit, s.ttl.Milliseconds()).Int()
		if err != nil || ok == 0 {
			s.mu.Lock()
			s.held[m] = taken // released at once below: its places so far go back
			s.mu.Unlock()
			release()
			if err != nil {
				return nil, err
			}
			return nil, w.full
		}
		taken = append(taken, w.key)
		s.mu.Lock()
		s.local[w.key]++
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.held[m] = taken
	s.mu.Unlock()
	return release, nil
}

func (s *streamSlots) localCount(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local[key]
}

// release gives m's places back: at once for this instance's own count, in
// Redis by run.
func (s *streamSlots) release(m string, keys []string) {
	s.mu.Lock()
	if _, ok := s.held[m]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.held, m)
	for _, k := range keys {
		if s.local[k]--; s.local[k] <= 0 {
			delete(s.local, k)
		}
		s.gone[k] = append(s.gone[k], m)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run refreshes this instance's places every third of the TTL and removes
// released ones from Redis, until ctx ends; then it removes what is left
// to remove (the streams have ended by then).
func (s *streamSlots) run(ctx context.Context) {
	if !s.enabled() {
		return
	}
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			s.flush(fctx)
			cancel()
			return
		case <-s.wake:
			s.flush(ctx)
		case <-tick.C:
			s.refresh(ctx)
		}
	}
}

// flush removes released places from Redis. A failure leaves them to expire.
func (s *streamSlots) flush(ctx context.Context) {
	s.mu.Lock()
	gone := s.gone
	s.gone = map[string][]string{}
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, ms := range gone {
			p.ZRem(ctx, k, anys(ms)...)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("stream places not released in redis; they expire", "err", err, "within", s.ttl)
	}
}

// refresh moves the expiry of every place this instance holds.
func (s *streamSlots) refresh(ctx context.Context) {
	s.mu.Lock()
	byKey := map[string][]string{}
	for m, keys := range s.held {
		for _, k := range keys {
			byKey[k] = append(byKey[k], m)
		}
	}
	s.mu.Unlock()
	if len(byKey) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, ms := range byKey {
			args := append([]any{s.ttl.Milliseconds()}, anys(ms)...)
			refreshScript.Eval(ctx, p, []string{k}, args...)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("stream places not refreshed", "err", err)
	}
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, v := range ss {
		out[i] = v
	}
	return out
}

// limitAddr is the address a per-address limit counts: an IPv4 address as
// it is, an IPv6 address by its /64 (one subscriber's usual share).
func limitAddr(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}
