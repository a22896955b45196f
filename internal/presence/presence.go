package presence

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/text/cases"
)

// Defaults, each with the reason for its value.
const (
	// DefaultTTL: an instance that died disappears within TTL + Refresh
	// (50 s), under the minute the issue promises, while a live instance
	// can miss a refresh or two (Redis briefly unreachable, a long GC)
	// without its people flickering.
	DefaultTTL = 40 * time.Second
	// DefaultGrace covers a reload or a reconnect to another instance
	// (EventSource retries within a few seconds) without a leave + join.
	DefaultGrace = 5 * time.Second
	// DefaultOpTimeout bounds one pipeline of scripts.
	DefaultOpTimeout = 2 * time.Second
	// DefaultMaxListed is the longest online list Online returns; the
	// count is exact beyond it.
	DefaultMaxListed = 200

	// keyTTLFactor: room keys expire keyTTLFactor×TTL after their last
	// write, a few refreshes of slack for the living.
	keyTTLFactor = 3
	// maxPerScript bounds the people one script claims or departs, so
	// that no script keeps Redis busy for long; a room with more local
	// people takes several scripts.
	maxPerScript = 256
	// maxPipeline is the number of scripts sent in one pipeline.
	maxPipeline = 64
	// sweepLimit bounds the expired entries one sweep removes; the rest
	// wait for the next refresh.
	sweepLimit = 512
	// onlineScanLimit bounds the entries Online reads from Redis to sort
	// by name (the count stays exact).
	onlineScanLimit = 10000
)

// Config is the presence tuning. Zero fields take the defaults above.
type Config struct {
	Instance  string        // this process's id, unique per process (random when empty); no "\n"
	TTL       time.Duration // expiry of this instance's claims and liveness (default DefaultTTL)
	Refresh   time.Duration // how often Run refreshes and sweeps (default TTL/4; must be < TTL)
	Grace     time.Duration // how long after a person's last local stream closed they count as gone (default DefaultGrace)
	Sharded   bool          // Redis Cluster: announce with SPUBLISH
	OpTimeout time.Duration // one pipeline of scripts (default DefaultOpTimeout)
	MaxListed int           // names in an online list (default DefaultMaxListed)
}

// Member is one person in an online list.
type Member struct {
	User string `json:"user"`
	UID  string `json:"uid"`
}

// Presence is one instance's part of the rooms' presence. The zero value is
// not valid: use New. Arrive and Depart are safe for concurrent use and
// never wait for Redis; Run does all the writing.
type Presence struct {
	rdb   redis.UniversalClient
	cfg   Config
	log   *slog.Logger
	stats counters
	wake  chan struct{} // capacity 1: Run has work (a claim to send, a new grace deadline)

	// lastStep is the time (UnixNano) at which the newest completed step
	// of Run took its snapshot: every departure due by then is written.
	// Tests wait on it.
	lastStep atomic.Int64
	running  atomic.Bool // Run is running

	mu sync.Mutex // guards rooms, dirty and graces; never held across a Redis call
	// rooms is the local truth: every person with a local stream, in
	// grace, or whose departure is not written yet, per room.
	rooms map[string]map[string]*person
	// dirty lists rooms with a person whose Redis state lags behind:
	// a claim not yet confirmed, or a departure due.
	dirty map[string]struct{}
	// graces are the pending ends of grace periods, in deadline order
	// (Grace is constant and deadlines are taken under mu). Stale entries
	// (the person came back) are skipped when they fall due.
	graces []grace
}

// person is one (room, uid) on this instance.
type person struct {
	name    string
	streams int       // local streams of this person in this room
	until   time.Time // streams == 0: end of the grace; zero while streams > 0
	held    bool      // Redis confirmed this instance's claim (and no departure since)
}

// due reports whether p's departure should be written at now.
func (p *person) due(now time.Time) bool { return p.streams == 0 && !p.until.After(now) }

type grace struct {
	at        time.Time
	room, uid string
}

// New returns the presence of one instance on rdb. Run makes it write.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) *Presence {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Instance == "" || strings.Contains(cfg.Instance, "\n") {
		if cfg.Instance != "" {
			log.Warn("presence: instance id contains a newline; using a random one", "instance", cfg.Instance)
		}
		cfg.Instance = rand.Text()[:12]
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Refresh <= 0 || cfg.Refresh >= cfg.TTL {
		if cfg.Refresh > 0 {
			log.Warn("presence: refresh must be shorter than the TTL; using TTL/4", "refresh", cfg.Refresh, "ttl", cfg.TTL)
		}
		cfg.Refresh = cfg.TTL / 4
	}
	if cfg.TTL+cfg.Refresh >= time.Minute {
		log.Warn("presence: a dead instance's people may stay listed for more than a minute", "ttl", cfg.TTL, "refresh", cfg.Refresh)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.MaxListed <= 0 {
		cfg.MaxListed = DefaultMaxListed
	}
	return &Presence{
		rdb:   rdb,
		cfg:   cfg,
		log:   log,
		wake:  make(chan struct{}, 1),
		rooms: make(map[string]map[string]*person),
		dirty: make(map[string]struct{}),
	}
}

// Instance returns this instance's id.
func (p *Presence) Instance() string { return p.cfg.Instance }

// signal tells Run there is work, without ever blocking.
func (p *Presence) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Arrive records that a stream of uid (shown as name) started carrying
// room. The first local stream of a person claims them in Redis (announcing
// a join if nobody had them online), unless it cancels their departure
// still in its grace period. It never blocks on Redis.
func (p *Presence) Arrive(room, uid, name string) {
	if !validRoom(room) || !validUID(uid) {
		p.stats.errors.Add(1)
		p.log.Error("presence: arrival ignored: invalid room or uid", "room", room, "uid", uid)
		return
	}
	if name == "" {
		name = uid
	}
	p.stats.arrivals.Add(1)
	p.mu.Lock()
	people := p.rooms[room]
	if people == nil {
		people = make(map[string]*person)
		p.rooms[room] = people
	}
	ps := people[uid]
	if ps == nil {
		ps = &person{}
		people[uid] = ps
	}
	ps.name = name
	ps.streams++
	if ps.streams == 1 && !ps.until.IsZero() {
		// A reload, a reconnect: the departure never happened.
		p.stats.coalesced.Add(1)
		ps.until = time.Time{}
	}
	need := !ps.held
	if need {
		p.dirty[room] = struct{}{}
	}
	p.mu.Unlock()
	if need {
		p.signal()
	}
}

// Depart records that a stream of uid carrying room ended. When it was the
// person's last local stream, their departure is written after the grace
// period unless they arrive again first. It only adjusts local counts: safe
// to call from a callback that must not block.
func (p *Presence) Depart(room, uid string) {
	p.mu.Lock()
	ps := p.rooms[room][uid]
	if ps == nil || ps.streams == 0 {
		p.mu.Unlock()
		p.stats.errors.Add(1)
		p.log.Error("presence: departure without an arrival ignored", "room", room, "uid", uid)
		return
	}
	p.stats.departures.Add(1)
	ps.streams--
	first := false
	if ps.streams == 0 {
		ps.until = time.Now().Add(p.cfg.Grace)
		first = len(p.graces) == 0
		p.graces = append(p.graces, grace{at: ps.until, room: room, uid: uid})
	}
	p.mu.Unlock()
	if first {
		// Run's timer is not set for any deadline: let it set one.
		p.signal()
	}
}

// Online returns the people online in room on any instance, sorted by name
// (case-insensitively), at most MaxListed of them, and their exact number.
// People with a local stream count even while their claim is on its way to
// Redis; people whose expiry passed (their instance died) do not.
func (p *Presence) Online(ctx context.Context, room string) (members []Member, count int, err error) {
	if !validRoom(room) {
		return nil, 0, fmt.Errorf("online list: invalid room %q", room)
	}
	local := p.localMembers(room)
	args := make([]any, 0, 1+len(local))
	args = append(args, onlineScanLimit)
	for _, m := range local {
		args = append(args, m.UID)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
	defer cancel()
	res, err := onlineScript.Run(ctx, p.rdb, []string{onlineKey(room), namesKey(room)}, args...).Slice()
	if err != nil {
		p.stats.errors.Add(1)
		return nil, 0, fmt.Errorf("online list of %s: %w", room, err)
	}
	members, count, err = parseOnline(res)
	if err != nil {
		p.stats.errors.Add(1)
		return nil, 0, fmt.Errorf("online list of %s: %w", room, err)
	}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		seen[m.UID] = true
	}
	for _, m := range local {
		if !seen[m.UID] {
			members = append(members, m)
		}
	}
	sortMembers(members)
	if len(members) > p.cfg.MaxListed {
		members = members[:p.cfg.MaxListed]
	}
	return members, count, nil
}

// localMembers returns the people of room this instance counts as online:
// with a stream, or in their grace period.
func (p *Presence) localMembers(room string) []Member {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Member
	for uid, ps := range p.rooms[room] {
		if !ps.due(now) {
			out = append(out, Member{User: ps.name, UID: uid})
		}
	}
	return out
}

var (
	errOnlineReply = errors.New("unexpected reply from the online script")
	errSyncReply   = errors.New("unexpected reply from the sync script")
)

// parseOnline reads onlineScript's reply; the count it returns includes the
// local people Redis does not have yet.
func parseOnline(res []any) ([]Member, int, error) {
	if len(res) < 2 || len(res)%2 != 0 {
		return nil, 0, errOnlineReply
	}
	n, ok1 := res[0].(int64)
	missing, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return nil, 0, errOnlineReply
	}
	members := make([]Member, 0, (len(res)-2)/2)
	for i := 2; i < len(res); i += 2 {
		uid, ok1 := res[i].(string)
		name, ok2 := res[i+1].(string)
		if !ok1 || !ok2 {
			return nil, 0, errOnlineReply
		}
		members = append(members, Member{User: name, UID: uid})
	}
	return members, int(n + missing), nil
}

// sortMembers sorts by case-folded name, then name, then uid (a total order,
// so every instance lists the same people in the same order).
func sortMembers(members []Member) {
	fold := cases.Fold()
	keys := make(map[string]string, len(members))
	for _, m := range members {
		keys[m.UID] = fold.String(m.User)
	}
	slices.SortFunc(members, func(a, b Member) int {
		if c := strings.Compare(keys[a.UID], keys[b.UID]); c != 0 {
			return c
		}
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return strings.Compare(a.UID, b.UID)
	})
}
