package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"chatroom/internal/chat"
)

// nameSettings are the settings of name reservations and their defences.
type nameSettings struct {
	hashSlots      int           // password hashes computed at once by this instance
	hashWait       time.Duration // how long a login waits for a free slot before 503
	reserveTTL     time.Duration // a reservation not used this long expires (0: never)
	reservesPerDay int           // reservations per client address and day (0: no limit)
	failuresFree   int           // wrong passwords per name (all addresses) before the back-off
	backoffBase    time.Duration // first back-off; it doubles with every further failure
	backoffMax     time.Duration
	onlineHold     time.Duration // an online name's look-alike claim lasts this long unrefreshed
	deviceMaxAge   time.Duration // how long a known-device cookie lets its holder past the back-off
}

// nameGuard is what logins need to defend names.
type nameGuard struct {
	nameSettings
	gate       *hashGate
	device     []securecookie.Codec // known-device cookie codecs
	bcryptCost int
}

const (
	deviceCookie     = "chat_device"
	deviceNamesMax   = 8 // names one known-device cookie remembers
	failureWindow    = time.Hour
	maxNameRecursion = 3
)

// Keys of names. The look-alike index has one key per skeleton, so a check
// reads a handful of keys, never a scan: "r" claims belong to reserved
// names, "o" claims to names online (refreshed while their streams are
// open). Each is its own key, so the index works on a cluster too.
func skeletonKey(kind, skel string) string { return "chat:skel:" + kind + ":" + skel }
func failuresKey(key string) string        { return "chat:password-failures:" + key }

// claimScript sets a look-alike claim to ARGV[1] ("uid\ndisplay") unless
// another uid holds it, and returns the holder ("" when it is now ours).
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[2]) + 1) ~= ARGV[2] .. '\n' then return v end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return ''
`)

// failScript counts a wrong password for a name (all addresses together)
// and, from the ARGV[1]th failure on, holds the name for ARGV[2] ms,
// doubling per further failure up to ARGV[3] ms. The count is forgotten
// ARGV[4] ms after the last failure. It returns the hold in ms.
var failScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local free, base, cap, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = 0
if n >= free then
  hold = math.min(cap, base * 2 ^ math.min(n - free, 40))
  redis.call('HSET', KEYS[1], 'until', now + hold)
end
redis.call('PEXPIRE', KEYS[1], math.max(window, hold))
return math.floor(hold)
`)

// heldScript returns how many ms the name is still held after failures.
var heldScript = redis.NewScript(`
local u = tonumber(redis.call('HGET', KEYS[1], 'until'))
if not u then return 0 end
local t = redis.call('TIME')
local left = u - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if left < 0 then return 0 end
return math.floor(left)
`)

// hashGate bounds the password hashes (bcrypt) computed at once, so logins
// cannot be used to take the CPU away from everyone else: at most slots at
// a time, each client address at most half of them waiting or hashing.
type hashGate struct {
	slots   chan struct{}
	wait    time.Duration
	perAddr int
	active  atomic.Int64
	observe func(active int64) // tests: called with the count as each hash starts

	mu     sync.Mutex
	byAddr map[string]int
}

var (
	errHashBusy = errors.New("every password slot is busy")
	errHashAddr = errors.New("this address already has password checks in progress")
)

func newHashGate(slots int, wait time.Duration, observe func(int64)) *hashGate {
	slots = max(slots, 1)
	return &hashGate{slots: make(chan struct{}, slots), wait: wait, perAddr: max(1, slots/2),
		observe: observe, byAddr: make(map[string]int)}
}

// do runs f (a hash) once a slot is free, waiting at most the gate's wait.
func (g *hashGate) do(ctx context.Context, addr string, f func()) error {
	g.mu.Lock()
	if g.byAddr[addr] >= g.perAddr {
		g.mu.Unlock()
		return errHashAddr
	}
	g.byAddr[addr]++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if g.byAddr[addr]--; g.byAddr[addr] <= 0 {
			delete(g.byAddr, addr)
		}
		g.mu.Unlock()
	}()
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-timer.C:
		return errHashBusy
	case <-ctx.Done():
		return errHashBusy
	}
	defer func() { <-g.slots }()
	n := g.active.Add(1)
	defer g.active.Add(-1)
	if g.observe != nil {
		g.observe(n)
	}
	f()
	return nil
}

// refusal is why a login is refused: status, sentence, Retry-After.
type refusal struct {
	status int
	msg    string
	retry  time.Duration
	limit  string // the kind of limit that refused (metrics), if one did
}

// limited is r, marked as the refusal of the limit of kind.
func (r *refusal) limited(kind string) *refusal {
	r.limit = kind
	return r
}

func refuse(status int, retry time.Duration, format string, args ...any) *refusal {
	return &refusal{status: status, msg: fmt.Sprintf(format, args...), retry: retry}
}

const storeUnavailable = "Logging in is not possible right now: the chat store is unavailable. Try again shortly."

func unavailableRefusal() *refusal {
	return refuse(http.StatusServiceUnavailable, 2*time.Second, storeUnavailable)
}

// admission is what a login learned: whether the name is reserved and the
// password proved it (then a known-device cookie is set).
type admission struct {
	proved bool
}

// admit decides whether who may log in with password, from client address
// ip, on request r. It enforces reservations (with the hashing gate and the
// per-name back-off), refuses look-alikes of other people's names, and
// remembers the session so that a later reservation of the name ends it.
func (d deps) admit(r *http.Request, who identity, password, ip string) (admission, *refusal) {
	ctx := r.Context()
	if len(password) > maxPasswordLen {
		return admission{}, refuse(http.StatusBadRequest, 0, "The password is too long: at most %d bytes.", maxPasswordLen)
	}
	// Remembered before the reservation is read: a reservation made after
	// this read finds the session and ends it; one made before is seen.
	if err := d.rememberSession(ctx, who, ip); err != nil {
		d.log.Warn("login: session not remembered", "err", err)
		return admission{}, unavailableRefusal()
	}
	return d.admitName(r, who, password, ip, 0)
}

func (d deps) admitName(r *http.Request, who identity, password, ip string, depth int) (admission, *refusal) {
	ctx := r.Context()
	n := d.names
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hash, err := d.rdb.Get(rctx, userKey(who.UID)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		if rf := d.lookAlike(ctx, who); rf != nil {
			return admission{}, rf
		}
		if password == "" {
			return admission{}, d.claimNames(ctx, who, "o", n.onlineHold) // an open name, as in the tutorial
		}
		return d.reserve(r, who, password, ip, depth)
	case err != nil:
		return admission{}, unavailableRefusal()
	}
	if password == "" {
		return admission{}, refuse(http.StatusUnauthorized, 0, "The name %q is reserved. Enter its password, or choose another name.", who.Name)
	}
	known := d.knownDevice(r, who.UID)
	if !known {
		held, err := heldScript.Run(rctx, d.rdb, []string{failuresKey(who.UID)}).Int64()
		if err != nil {
			return admission{}, unavailableRefusal()
		}
		if held > 0 {
			wait := time.Duration(held) * time.Millisecond
			return admission{}, refuse(http.StatusTooManyRequests, wait,
				"Too many wrong passwords were tried for %q. Try again in %s s (a browser that logged in as %q before is not held back).",
				who.Name, retryAfter(wait), who.Name).limited(limitWrongPasswords)
		}
	}
	wait, err := d.allow(ctx, "password:"+who.UID+":"+ip, d.limits.passwordPerMin, d.limits.passwordPerMin, time.Minute)
	if err != nil {
		return admission{}, unavailableRefusal()
	}
	if wait > 0 {
		return admission{}, refuse(http.StatusTooManyRequests, time.Minute, "Too many password attempts for %q. Try again in a minute.", who.Name).limited(limitPasswords)
	}
	var wrong bool
	if rf := d.hash(ctx, ip, func() { wrong = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil }); rf != nil {
		return admission{}, rf
	}
	if wrong {
		d.metrics.wrongPassword()
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := failScript.Run(fctx, d.rdb, []string{failuresKey(who.UID)},
			n.failuresFree, n.backoffBase.Milliseconds(), n.backoffMax.Milliseconds(), failureWindow.Milliseconds()).Err(); err != nil {
			d.log.Warn("password failure not counted", "err", err)
		}
		return admission{}, refuse(http.StatusUnauthorized, 0, "Wrong password for %q.", who.Name)
	}
	// The owner: the reservation (and its look-alike claims) live on.
	if n.reserveTTL > 0 {
		if err := d.rdb.Expire(rctx, userKey(who.UID), n.reserveTTL).Err(); err != nil {
			d.log.Warn("reservation not refreshed", "err", err)
		}
	}
	if !known {
		d.rdb.Del(rctx, failuresKey(who.UID)) // best effort: a held name stays held for its holder only
	}
	if rf := d.claimNames(ctx, who, "r", n.reserveTTL); rf != nil && rf.status != http.StatusConflict {
		return admission{}, rf
	}
	d.claimNames(ctx, who, "o", n.onlineHold) // another person's online look-alike does not lock the owner out
	return admission{proved: true}, nil
}

// reserve makes a free name who's, protected by password, and ends every
// other session of the name on every instance.
func (d deps) reserve(r *http.Request, who identity, password, ip string, depth int) (admission, *refusal) {
	ctx := r.Context()
	n := d.names
	if len(password) < minPasswordLen {
		return admission{}, refuse(http.StatusBadRequest, 0, "To reserve a name, use a password of at least %d characters (or leave it empty).", minPasswordLen)
	}
	wait, err := d.allow(ctx, "reserve:"+ip, n.reservesPerDay, n.reservesPerDay, 24*time.Hour)
	if err != nil {
		return admission{}, unavailableRefusal()
	}
	if wait > 0 {
		return admission{}, refuse(http.StatusTooManyRequests, wait,
			"Your address has reserved too many names today (%d). Try again in %s s, or log in without a password.", n.reservesPerDay, retryAfter(wait)).limited(limitReserves)
	}
	var h []byte
	var herr error
	if rf := d.hash(ctx, ip, func() { h, herr = bcrypt.GenerateFromPassword([]byte(password), n.bcryptCost) }); rf != nil {
		return admission{}, rf
	}
	if herr != nil {
		return admission{}, refuse(http.StatusBadRequest, 0, "That password cannot be used.")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	set, err := d.rdb.SetNX(sctx, userKey(who.UID), h, n.reserveTTL).Result()
	if err != nil {
		return admission{}, unavailableRefusal()
	}
	if !set {
		if depth >= maxNameRecursion {
			return admission{}, unavailableRefusal()
		}
		return d.admitName(r, who, password, ip, depth+1) // someone reserved it just now
	}
	d.log.Info("name reserved", "name", who.Name)
	if rf := d.claimNames(ctx, who, "r", n.reserveTTL); rf != nil && rf.status != http.StatusConflict {
		d.log.Warn("look-alike claims of a reserved name not stored", "name", who.Name)
	}
	d.claimNames(ctx, who, "o", n.onlineHold)
	if err := d.endOtherSessions(ctx, who); err != nil {
		d.log.Warn("name reserved, but its earlier sessions were not all ended", "name", who.Name, "err", err)
	}
	return admission{proved: true}, nil
}

// hash runs f through the hashing gate, or says why it cannot run now.
func (d deps) hash(ctx context.Context, ip string, f func()) *refusal {
	switch err := d.names.gate.do(ctx, ip, f); {
	case errors.Is(err, errHashAddr):
		return refuse(http.StatusTooManyRequests, 2*time.Second, "Your address already has password checks in progress. Try again in a few seconds.").limited(limitHashAddr)
	case err != nil:
		return refuse(http.StatusServiceUnavailable, 2*time.Second, "The server is busy checking other passwords. Try again in a few seconds.").limited(limitHashBusy)
	}
	return nil
}

// claimValue is what a look-alike claim holds: the uid, then the name shown
// in refusals.
func claimValue(who identity) string { return who.UID + "\n" + who.Name }

// lookAlike refuses who's name when it looks like a reserved or online
// name that belongs to someone else (another uid).
func (d deps) lookAlike(ctx context.Context, who identity) *refusal {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	skels := chat.Skeletons(who.Name)
	pipe := d.rdb.Pipeline()
	var gets []*redis.StringCmd
	for _, s := range skels {
		gets = append(gets, pipe.Get(ctx, skeletonKey("r", s)), pipe.Get(ctx, skeletonKey("o", s)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailableRefusal()
	}
	for _, g := range gets {
		if other, ok := otherHolder(g.Val(), who.UID); ok {
			return lookAlikeRefusal(other)
		}
	}
	return nil
}

func lookAlikeRefusal(other string) *refusal {
	return refuse(http.StatusConflict, 0, "That name is too similar to %q, which is taken. Choose another name.", other)
}

// otherHolder returns the name in claim v when it belongs to a uid other
// than uid. A garbled claim (no separator) counts as someone else's.
func otherHolder(v, uid string) (string, bool) {
	if v == "" {
		return "", false
	}
	holder, name, ok := strings.Cut(v, "\n")
	if !ok {
		name = v
	}
	if len(name) > 4*chat.MaxNameLen {
		name = strings.ToValidUTF8(name[:4*chat.MaxNameLen], "") + "…" // a garbled claim stays a short sentence
	}
	if !ok {
		return name, true
	}
	if holder == uid {
		return "", false
	}
	return name, true
}

// claimNames stores who's look-alike claims of one kind for ttl (0: no
// expiry), keeping those of someone else; the first such holder is
// reported as a 409.
func (d deps) claimNames(ctx context.Context, who identity, kind string, ttl time.Duration) *refusal {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var taken *refusal
	for _, s := range chat.Skeletons(who.Name) {
		v, err := claimScript.Run(ctx, d.rdb, []string{skeletonKey(kind, s)}, claimValue(who), who.UID, ttl.Milliseconds()).Text()
		if err != nil {
			d.log.Warn("look-alike claim not stored", "err", err)
			return unavailableRefusal()
		}
		if other, ok := otherHolder(v, who.UID); ok && taken == nil {
			taken = lookAlikeRefusal(other)
		}
	}
	return taken
}

// endOtherSessions ends, on every instance, every remembered session of
// who's name except who's own: its cookie stops working and its streams
// close, as at a logout.
func (d deps) endOtherSessions(ctx context.Context, who identity) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	sids, err := d.rdb.ZRange(rctx, sessionsKey("u", who.UID), 0, -1).Result()
	if err != nil {
		return err
	}
	sids = slices.DeleteFunc(sids, func(s string) bool { return s == who.SID })
	var errs []error
	for _, sid := range sids {
		if err := d.broker.EndSession(ctx, sid, d.sessions.maxAge); err != nil {
			errs = append(errs, err)
		}
	}
	if len(sids) > 0 {
		d.log.Info("earlier sessions of a newly reserved name ended", "name", who.Name, "sessions", len(sids))
	}
	if rctx.Err() == nil {
		d.rdb.ZRem(rctx, sessionsKey("u", who.UID), sids)
	}
	return errors.Join(errs...)
}

// Known devices (OWASP's device cookies): a browser that logged in to a
// reserved name with its password gets a signed cookie naming it, and that
// browser is not held back by the name's failure back-off, so strangers
// guessing cannot lock the owner out. Its own wrong guesses still count
// and still meet the per-name-and-address limit.

func deviceCodecs(secrets []string, maxAge time.Duration) []securecookie.Codec {
	var pairs [][]byte
	for _, s := range secrets {
		pairs = append(pairs, derive(s, "chat device signing", 64), derive(s, "chat device encryption", 32))
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(int(maxAge.Seconds()))
		}
	}
	return codecs
}

// deviceNames returns the names the request's known-device cookie vouches
// for; a forged, expired or garbled cookie vouches for none.
func (d deps) deviceNames(r *http.Request) []string {
	c, err := r.Cookie(deviceCookie)
	if err != nil {
		return nil
	}
	var uids []string
	if securecookie.DecodeMulti(deviceCookie, c.Value, &uids, d.names.device...) != nil {
		return nil
	}
	return uids
}

func (d deps) knownDevice(r *http.Request, uid string) bool {
	return slices.Contains(d.deviceNames(r), uid)
}

// rememberDevice sets the known-device cookie for uid (newest first).
func (d deps) rememberDevice(w http.ResponseWriter, r *http.Request, uid string) {
	uids := slices.DeleteFunc(d.deviceNames(r), func(u string) bool { return u == uid })
	uids = append([]string{uid}, uids...)
	if len(uids) > deviceNamesMax {
		uids = uids[:deviceNamesMax]
	}
	v, err := securecookie.EncodeMulti(deviceCookie, uids, d.names.device...)
	if err != nil {
		d.log.Warn("known-device cookie not set", "err", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: v, Path: "/login", MaxAge: int(d.names.deviceMaxAge.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: d.sessions.secure || d.sessions.proxies.isHTTPS(r)})
}

// onlineNames keeps, on this instance, the people with open streams, and
// refreshes their look-alike claims while they stay, so a name online on
// any instance keeps its look-alikes out. It wraps presence: every stream
// arrives and departs there.
type onlineNames struct {
	presenceTracker
	mu     sync.Mutex
	people map[string]*onlinePerson // uid →
}

type onlinePerson struct {
	name    string
	streams int
}

func newOnlineNames(p presenceTracker) *onlineNames {
	return &onlineNames{presenceTracker: p, people: make(map[string]*onlinePerson)}
}

func (o *onlineNames) Arrive(room, uid, name string) {
	o.mu.Lock()
	p := o.people[uid]
	if p == nil {
		p = &onlinePerson{}
		o.people[uid] = p
	}
	p.name = name
	p.streams++
	o.mu.Unlock()
	o.presenceTracker.Arrive(room, uid, name)
}

func (o *onlineNames) Depart(room, uid string) {
	o.mu.Lock()
	if p := o.people[uid]; p != nil {
		if p.streams--; p.streams <= 0 {
			delete(o.people, uid)
		}
	}
	o.mu.Unlock()
	o.presenceTracker.Depart(room, uid)
}

func (o *onlineNames) snapshot() []identity {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]identity, 0, len(o.people))
	for uid, p := range o.people {
		out = append(out, identity{UID: uid, Name: p.name})
	}
	return out
}

// runOnlineClaims refreshes the online people's look-alike claims every
// third of the hold, until ctx ends.
func runOnlineClaims(ctx context.Context, d deps, o *onlineNames, log *slog.Logger) {
	t := time.NewTicker(d.names.onlineHold / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, who := range o.snapshot() {
			if ctx.Err() != nil {
				return
			}
			if rf := d.claimNames(ctx, who, "o", d.names.onlineHold); rf != nil && rf.status != http.StatusConflict {
				log.Debug("online look-alike claims not refreshed", "name", who.Name)
				break
			}
		}
	}
}
