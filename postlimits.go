package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tuning of the flood limits, each with the reason for its value.
const (
	// A room's slow mode read from Redis is used this long before it is
	// read again: a change by a moderator applies within it everywhere.
	slowModeCache = 2 * time.Second
	// Rooms whose slow mode one instance keeps in memory; beyond, the
	// cache starts over (rooms are bounded per user, not in total).
	slowModeCacheRooms = 4096
	// The longest slow mode: more is a mute, which is moderation's.
	maxSlowMode = 24 * time.Hour
	// A name's first post is remembered this long (then it is new again).
	firstSeenTTL = 30 * 24 * time.Hour
	// A new name's burst above -new-name-posts per minute.
	newNameBurst = 10
)

// slowModeKey is where a room's slow mode lives in Redis: the least number
// of whole seconds between two messages of one user in the room. "0" is
// off; no key means the -slow-mode default. The moderation endpoints write
// it; posting only reads it.
func slowModeKey(room string) string { return "chat:slowmode:" + room }

func slowUserKey(room, uid string) string { return "chat:slow:" + room + ":" + uid }
func firstSeenKey(uid string) string      { return "chat:firstseen:" + uid }

// postLimits are the flood limits on top of the per-user rate (limits): per
// client address, per room, for names that are new, and each room's slow
// mode. A zero value disables that limit.
type postLimits struct {
	perAddr    int           // messages per second per client address (burst twice)
	perRoom    int           // messages per second per room (burst twice)
	newAge     time.Duration // a name that first posted less than this ago is new
	newPerMin  int           // messages per minute of a new name
	slowMode   time.Duration // default slow mode
	maxLines   int           // lines per message
	slowModes  *slowModes
	firstSeens *firstSeen
}

// slowModes reads rooms' slow modes from Redis, cached briefly per
// instance.
type slowModes struct {
	rdb redis.UniversalClient
	def time.Duration
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex // guards cache
	cache map[string]slowModeEntry
}

type slowModeEntry struct {
	interval time.Duration
	read     time.Time
}

func newSlowModes(rdb redis.UniversalClient, def time.Duration, log *slog.Logger) *slowModes {
	return &slowModes{rdb: rdb, def: def, log: log, now: time.Now, cache: map[string]slowModeEntry{}}
}

// interval is room's slow mode. A value in Redis that is not a whole number
// of seconds between 0 and 24 h is ignored (the default applies) and
// logged: Redis is input too.
func (m *slowModes) interval(ctx context.Context, room string) (time.Duration, error) {
	now := m.now()
	m.mu.Lock()
	e, ok := m.cache[room]
	m.mu.Unlock()
	if ok && now.Sub(e.read) < slowModeCache {
		return e.interval, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := m.rdb.Get(ctx, slowModeKey(room)).Result()
	iv := m.def
	switch {
	case err == redis.Nil:
	case err != nil:
		return 0, fmt.Errorf("read slow mode: %w", err)
	default:
		n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if perr != nil || n < 0 || time.Duration(n)*time.Second > maxSlowMode {
			m.log.Warn("ignoring a malformed slow mode in redis", "key", slowModeKey(room), "value", v[:min(len(v), 40)])
		} else {
			iv = time.Duration(n) * time.Second
		}
	}
	m.mu.Lock()
	if len(m.cache) >= slowModeCacheRooms {
		clear(m.cache)
	}
	m.cache[room] = slowModeEntry{interval: iv, read: now}
	m.mu.Unlock()
	return iv, nil
}

// firstSeen remembers when each name first posted.
type firstSeen struct{ rdb redis.UniversalClient }

// firstSeenScript returns when KEYS[1]'s name first posted (ms), recording
// ARGV[1] if it never did; the record lasts ARGV[2] ms after the last post.
var firstSeenScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
`)

func (f *firstSeen) since(ctx context.Context, uid string, now time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := firstSeenScript.Run(ctx, f.rdb, []string{firstSeenKey(uid)}, now.UnixMilli(), firstSeenTTL.Milliseconds()).Text()
	if err != nil {
		return 0, fmt.Errorf("first seen: %w", err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, nil // a foreign value: take the name as known
	}
	return now.Sub(time.UnixMilli(ms)), nil
}

// postRefusal is why a post is refused by a flood limit: a 429 with its
// sentence and when to try again.
type postRefusal struct {
	wait time.Duration
	msg  string
	kind string // which limit (metrics)
}

// checkFloods applies the flood limits to one post of who in room from
// addr, after the per-user rate: the room's slow mode, the new-name limit,
// the per-address rate, the new names' share of the room's rate (half) and
// the room's rate, in that order (the most particular first, so a flood
// from one name or address does not use up the room's budget). Each passed limit counts the post even when a later one refuses
// it. It returns nil when the post may go ahead, or an error when Redis
// cannot tell.
func (d deps) checkFloods(ctx context.Context, uid, room, addr string) (*postRefusal, error) {
	pl := d.posts
	if pl.slowModes != nil {
		iv, err := pl.slowModes.interval(ctx, room)
		if err != nil {
			return nil, err
		}
		if iv > 0 {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			set, err := d.rdb.SetNX(rctx, slowUserKey(room, uid), 1, iv).Result()
			var left time.Duration
			if err == nil && !set {
				left, err = d.rdb.PTTL(rctx, slowUserKey(room, uid)).Result()
			}
			cancel()
			if err != nil {
				return nil, fmt.Errorf("slow mode: %w", err)
			}
			if !set {
				left = max(left, time.Millisecond)
				return &postRefusal{left, fmt.Sprintf("slow mode: this room allows one message every %s per person; try again in %s s", iv, retryAfter(left)), limitSlowMode}, nil
			}
		}
	}
	isNew := false
	if pl.firstSeens != nil && pl.newAge > 0 && pl.newPerMin > 0 {
		age, err := pl.firstSeens.since(ctx, uid, time.Now())
		if err != nil {
			return nil, err
		}
		if isNew = age < pl.newAge; isNew {
			wait, err := d.allow(ctx, "post-new:"+uid, pl.newPerMin, newNameBurst, time.Minute)
			if err != nil {
				return nil, err
			}
			if wait > 0 {
				return &postRefusal{wait, fmt.Sprintf("slow down: new names may send %d messages a minute during their first %s; try again in %s s", pl.newPerMin, pl.newAge, retryAfter(wait)), limitNewName}, nil
			}
		}
	}
	wait, err := d.allow(ctx, "post-addr:"+addr, pl.perAddr, 2*pl.perAddr, time.Second)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		return &postRefusal{wait, fmt.Sprintf("slow down: too many messages from your address (limit %d per second); try again in %s s", pl.perAddr, retryAfter(wait)), limitPostsAddr}, nil
	}
	if isNew && pl.perRoom > 0 {
		// New names together get half of the room's rate: a flood of fresh
		// names leaves the other half to the people already there.
		share := max(1, pl.perRoom/2)
		wait, err = d.allow(ctx, "post-room-new:"+room, share, 2*share, time.Second)
		if err != nil {
			return nil, err
		}
		if wait > 0 {
			return &postRefusal{wait, fmt.Sprintf("slow down: this room is busy with new names (limit %d messages per second for all of them); try again in %s s", share, retryAfter(wait)), limitPostsRoomNew}, nil
		}
	}
	wait, err = d.allow(ctx, "post-room:"+room, pl.perRoom, 2*pl.perRoom, time.Second)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		return &postRefusal{wait, fmt.Sprintf("slow down: this room is busy (limit %d messages per second for everyone); try again in %s s", pl.perRoom, retryAfter(wait)), limitPostsRoom}, nil
	}
	return nil, nil
}

// checkLines refuses a message of more than max lines (400): hundreds of
// empty lines would wall the page.
func checkLines(text string, max int) error {
	if max <= 0 {
		return nil
	}
	if n := strings.Count(text, "\n") + 1; n > max {
		return fmt.Errorf("message has too many lines: %d, the limit is %d", n, max)
	}
	return nil
}

// refusePost answers a flood refusal: 429, Retry-After and the sentence.
func refusePost(w http.ResponseWriter, fail func(int, string), r *postRefusal) {
	w.Header().Set("Retry-After", retryAfter(r.wait))
	fail(http.StatusTooManyRequests, r.msg)
}
