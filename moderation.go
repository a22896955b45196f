package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
)

// moderationConfig is who moderates and the limits of moderation.
type moderationConfig struct {
	admins     map[string]bool // canonical names; each must also be reserved (password) to act
	editWindow time.Duration   // an author may delete or edit a message this long after sending it
	perMin     int             // moderation requests (deletes, edits, admin actions) per user and minute
}

const (
	maxRestriction = 365 * 24 * time.Hour // longest mute or ban
	maxReason      = 200                  // characters of a mute's or ban's reason
	auditLen       = 1000                 // moderation actions kept in the audit log
	maxAuditRead   = 1000
	sessionsKept   = 1000 // sessions remembered per name and per address, for kicks, bans and reservations
	auditKey       = "chat:audit"
)

// Keys of moderation state. Mutes and bans expire with their keys' TTLs, on
// Redis's clock.
func restrictionKey(kind, by, who string) string { return "chat:mod:" + kind + ":" + by + ":" + who }
func sessionsKey(by, who string) string          { return "chat:sessions:" + by + ":" + who }

// restriction is the stored value of a mute or ban.
type restriction struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	Until  time.Time `json:"until"`
}

// auditEntry is one moderation action in the audit log.
type auditEntry struct {
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	User     string    `json:"user,omitempty"`
	IP       string    `json:"ip,omitempty"`
	Room     string    `json:"room,omitempty"`
	ID       string    `json:"id,omitempty"`
	Duration string    `json:"duration,omitempty"`
	Seconds  *int      `json:"seconds,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// parseAdmins reads -admins: comma-separated names, each normalised as a
// login would be.
func parseAdmins(list string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		_, key, err := chat.CleanName(f)
		if err != nil {
			return nil, fmt.Errorf("admin %q: %w", f, err)
		}
		out[key] = true
	}
	return out, nil
}

// isAdmin reports whether who may moderate now: listed in -admins, and the
// name reserved with a password (checked at each action, so a name whose
// reservation is gone cannot be taken over by someone else and used).
func (d deps) isAdmin(ctx context.Context, who identity) (bool, error) {
	if !d.mod.admins[who.UID] {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n, err := d.rdb.Exists(ctx, userKey(who.UID)).Result()
	if err != nil {
		return false, fmt.Errorf("check reservation: %w", err)
	}
	return n > 0, nil
}

// restricted returns the latest end of the restrictions of kinds ("mute",
// "ban") on uid or ip that are in force, read in one round trip.
func (d deps) restricted(ctx context.Context, uid, ip string, kinds ...string) (time.Time, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var cmds []*redis.DurationCmd
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range kinds {
			cmds = append(cmds, p.PTTL(ctx, restrictionKey(k, "u", uid)))
			if ip != "" {
				cmds = append(cmds, p.PTTL(ctx, restrictionKey(k, "ip", ip)))
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("check restrictions: %w", err)
	}
	var left time.Duration
	found := false
	for _, c := range cmds {
		// PTTL: -2 no key, -1 no expiry (never written so: counted as the longest).
		switch v := c.Val(); {
		case v == -1:
			found, left = true, max(left, maxRestriction)
		case v > 0:
			found, left = true, max(left, v)
		}
	}
	return time.Now().Add(left), found, nil
}

// restrictionSentence is the sentence for a restriction in force until.
func restrictionSentence(what string, until time.Time) string {
	return fmt.Sprintf("%s until %s UTC", what, until.UTC().Format("2006-01-02 15:04:05"))
}

// checkBanned answers 403 (or 503) when uid or ip is banned, and reports
// whether it did.
func (d deps) checkBanned(w http.ResponseWriter, r *http.Request, uid, ip string) bool {
	until, banned, err := d.restricted(r.Context(), uid, ip, "ban")
	if err != nil {
		d.log.Warn("ban check failed; letting the request through", "err", err)
		return false
	}
	if banned {
		httpError(w, http.StatusForbidden, restrictionSentence("you are banned from this chat", until))
		return true
	}
	return false
}

// rememberSession records sid under its name and address (the newest
// sessionsKept of each, for as long as a login lasts), so a kick, a ban or
// a reservation of the name can end them on every instance. A login
// records it before it reads the name's reservation (admit).
func (d deps) rememberSession(ctx context.Context, who identity, ip string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := float64(time.Now().UnixMilli())
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range []string{sessionsKey("u", who.UID), sessionsKey("ip", ip)} {
			p.ZAdd(ctx, k, redis.Z{Score: now, Member: who.SID})
			p.ZRemRangeByRank(ctx, k, 0, -sessionsKept-1)
			p.PExpire(ctx, k, d.sessions.maxAge)
		}
		return nil
	})
	return err
}

// endSessions ends every remembered session of a name or address.
func (d deps) endSessions(ctx context.Context, by, who, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	sids, err := d.rdb.ZRange(ctx, sessionsKey(by, who), 0, -1).Result()
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	return d.broker.EndSessions(ctx, sids, d.sessions.maxAge, reason)
}

// audit appends e to the capped audit log.
func (d deps) audit(ctx context.Context, e auditEntry) {
	e.Time = time.Now().UTC()
	b, _ := json.Marshal(e)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, auditKey, b)
		p.LTrim(ctx, auditKey, 0, auditLen-1)
		return nil
	})
	if err != nil {
		d.log.Warn("audit log not written", "action", e.Action, "err", err)
	}
	d.log.Info("moderation", "actor", e.Actor, "action", e.Action, "user", e.User, "ip", e.IP, "room", e.Room, "id", e.ID)
}

// modStart is the common start of every moderation request: a session,
// the rate limit, a form. It answers the client itself when it fails.
func (d deps) modStart(w http.ResponseWriter, r *http.Request) (identity, map[string][]string, bool) {
	who, ok := d.user(r)
	if !ok {
		httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
		return who, nil, false
	}
	form, err := readForm(w, r)
	if err != nil {
		status, msg := errorStatus(err)
		httpError(w, status, msg)
		return who, nil, false
	}
	wait, err := d.allow(r.Context(), "mod:"+who.UID, d.mod.perMin, d.mod.perMin, time.Minute)
	if err != nil {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
		return who, nil, false
	}
	if wait > 0 {
		w.Header().Set("Retry-After", retryAfter(wait))
		d.metrics.limit(limitModeration)
		httpError(w, http.StatusTooManyRequests, fmt.Sprintf("too many moderation requests; try again in %s s", retryAfter(wait)))
		return who, nil, false
	}
	return who, form, true
}

// handleModerateMessage serves POST /r/{room}/delete (form field id) and
// POST /r/{room}/edit (id, message): the author within -edit-window, an
// admin (delete only) at any time. 204 once every instance will show it.
func handleModerateMessage(d deps, op string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		who, form, ok := d.modStart(w, r)
		if !ok {
			return
		}
		rawID, err := field(form, "id", true)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		id, err := chat.ParseID(rawID)
		if err != nil || id.IsZero() {
			httpError(w, http.StatusBadRequest, "the field \"id\" must be a message ID such as 1795724382207-0")
			return
		}
		mod := broker.Moderation{Op: op, Target: id, User: who.Name, UID: who.UID, Window: d.mod.editWindow}
		if op == chat.OpEdit {
			raw, err := field(form, "message", true)
			if err != nil {
				httpError(w, http.StatusBadRequest, err.Error())
				return
			}
			if mod.Text, err = chat.CleanMessage(raw, d.maxMessage); err != nil {
				status, msg := errorStatus(err)
				httpError(w, status, msg)
				return
			}
			until, muted, err := d.restricted(r.Context(), who.UID, d.sessions.proxies.clientIP(r), "mute", "ban")
			if err == nil && muted {
				httpError(w, http.StatusForbidden, restrictionSentence("message not changed: you are muted", until))
				return
			}
		} else {
			if mod.Admin, err = d.isAdmin(r.Context(), who); err != nil {
				w.Header().Set("Retry-After", "2")
				httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
				return
			}
		}
		if _, err := d.broker.Moderate(r.Context(), room, mod); err != nil {
			switch {
			case errors.Is(err, broker.ErrNoSuchMessage):
				httpError(w, http.StatusNotFound, err.Error())
			case errors.Is(err, broker.ErrNotYours), errors.Is(err, broker.ErrEditExpired):
				httpError(w, http.StatusForbidden, err.Error())
			default:
				d.log.Warn("moderation failed", "op", op, "err", err)
				w.Header().Set("Retry-After", "2")
				httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			}
			return
		}
		if op == chat.OpDelete {
			d.audit(r.Context(), auditEntry{Actor: who.Name, Action: "delete", Room: room, ID: id.String()})
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// adminStart is modStart for the admin routes: only admins get further.
func (d deps) adminStart(w http.ResponseWriter, r *http.Request) (identity, map[string][]string, bool) {
	who, form, ok := d.modStart(w, r)
	if !ok {
		return who, nil, false
	}
	admin, err := d.isAdmin(r.Context(), who)
	if err != nil {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
		return who, nil, false
	}
	if !admin {
		httpError(w, http.StatusForbidden, "only an admin can do that (a name listed in -admins, reserved with a password)")
		return who, nil, false
	}
	return who, form, true
}

// target is whom an admin action is about: a name or a client address.
type target struct {
	by, key, shown string // by "u" (key: canonical name) or "ip" (key: the address)
}

// named is e naming t, as its user or its address.
func (t target) named(e auditEntry) auditEntry {
	if t.by == "u" {
		e.User = t.shown
	} else {
		e.IP = t.shown
	}
	return e
}

// readTarget reads exactly one of the fields user and ip.
func readTarget(form map[string][]string, allowIP bool) (target, error) {
	user, err := field(form, "user", false)
	if err != nil {
		return target{}, err
	}
	ip, err := field(form, "ip", false)
	if err != nil {
		return target{}, err
	}
	switch {
	case user != "" && ip != "":
		return target{}, errors.New("give either the field \"user\" or \"ip\", not both")
	case user != "":
		if len(user) > 8*chat.MaxNameLen {
			return target{}, errors.New("the field \"user\" is not a name: too long")
		}
		name, key, err := chat.CleanName(user)
		if err != nil {
			return target{}, fmt.Errorf("the field \"user\" is not a name: %v", err)
		}
		return target{by: "u", key: key, shown: name}, nil
	case ip != "" && allowIP:
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		if err != nil {
			return target{}, fmt.Errorf("the field \"ip\" is not an IP address")
		}
		a = a.Unmap()
		return target{by: "ip", key: a.String(), shown: a.String()}, nil
	case allowIP:
		return target{}, errors.New("give the field \"user\" (a name) or \"ip\" (a client address)")
	}
	return target{}, errors.New("the field \"user\" is missing")
}

// targetStart begins an admin action on a person or an address (mute,
// ban, kick): the admin, the form and its target, which may not be an
// admin. It has answered when ok is false.
func (d deps) targetStart(w http.ResponseWriter, r *http.Request) (identity, map[string][]string, target, bool) {
	who, form, ok := d.adminStart(w, r)
	if !ok {
		return who, nil, target{}, false
	}
	t, err := readTarget(form, true)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return who, nil, target{}, false
	}
	if t.by == "u" && d.mod.admins[t.key] {
		httpError(w, http.StatusForbidden, "an admin cannot be muted, banned or kicked: remove the name from -admins first")
		return who, nil, target{}, false
	}
	return who, form, t, true
}

// handleRestrict serves POST /admin/mute and POST /admin/ban: fields user
// or ip, duration (e.g. 10m, 24h; 0 lifts it), optional reason. A ban also
// ends the target's sessions now, on every instance.
func handleRestrict(d deps, kind string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, form, t, ok := d.targetStart(w, r)
		if !ok {
			return
		}
		rawDur, err := field(form, "duration", true)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		dur, err := time.ParseDuration(strings.TrimSpace(rawDur))
		if err != nil || dur < 0 || dur > maxRestriction || (dur > 0 && dur < time.Second) {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("the field \"duration\" must be a duration such as 10m or 24h, between 1s and %v, or 0 to lift it", maxRestriction))
			return
		}
		reason, err := field(form, "reason", false)
		if err == nil && (utf8.RuneCountInString(reason) > maxReason || !utf8.ValidString(reason) || strings.ContainsFunc(reason, func(c rune) bool { return c < ' ' || c == 0x7f || chat.IsBidiControl(c) })) {
			err = fmt.Errorf("the field \"reason\" must be at most %d characters of text on one line", maxReason)
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		key := restrictionKey(kind, t.by, t.key)
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if dur == 0 {
			err = d.rdb.Del(ctx, key).Err()
		} else {
			v, _ := json.Marshal(restriction{By: who.Name, Reason: reason, Until: time.Now().Add(dur).UTC()})
			err = d.rdb.Set(ctx, key, v, dur).Err()
		}
		if err == nil && kind == "ban" && dur > 0 {
			err = d.endSessions(ctx, t.by, t.key, broker.EndBanned)
		}
		if err != nil {
			d.log.Warn("moderation failed", "action", kind, "err", err)
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		action := kind
		if dur == 0 {
			action = "un" + kind
		}
		e := auditEntry{Actor: who.Name, Action: action, Reason: reason}
		if dur > 0 {
			e.Duration = dur.String()
		}
		d.audit(r.Context(), t.named(e))
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleKick serves POST /admin/kick: field user (or ip); every session of
// it ends now, on every instance (its open streams get a disconnect event
// "kicked"); logging in again is allowed.
func handleKick(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, _, t, ok := d.targetStart(w, r)
		if !ok {
			return
		}
		if err := d.endSessions(r.Context(), t.by, t.key, broker.EndKicked); err != nil {
			d.log.Warn("kick failed", "err", err)
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		e := auditEntry{Actor: who.Name, Action: "kick"}
		d.audit(r.Context(), t.named(e))
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleSlowMode serves POST /admin/slowmode: fields room and seconds
// (0–86400; 0 ends it), stored as chat:slowmode:<room>, which posting reads.
func handleSlowMode(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, form, ok := d.adminStart(w, r)
		if !ok {
			return
		}
		rawRoom, err := field(form, "room", true)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		room, ok := chat.CanonicalRoom(rawRoom)
		if !ok {
			httpError(w, http.StatusBadRequest, "the field \"room\" is not a room name (1–32 of a-z 0-9 - _)")
			return
		}
		raw, err := field(form, "seconds", true)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		secs, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || secs < 0 || secs > int(maxSlowMode/time.Second) {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("the field \"seconds\" must be a whole number from 0 (off) to %d", int(maxSlowMode/time.Second)))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if secs == 0 {
			err = d.rdb.Del(ctx, slowModeKey(room)).Err()
		} else {
			err = d.rdb.Set(ctx, slowModeKey(room), secs, 0).Err()
		}
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		d.audit(r.Context(), auditEntry{Actor: who.Name, Action: "slowmode", Room: room, Seconds: &secs})
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleAudit serves GET /admin/audit[?limit=n]: the newest moderation
// actions first (n 1–1000, default 100), for admins.
func handleAudit(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := d.user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		admin, err := d.isAdmin(r.Context(), who)
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		if !admin {
			httpError(w, http.StatusForbidden, "only an admin can read the audit log")
			return
		}
		limit := 100
		if raw := r.URL.Query().Get("limit"); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > maxAuditRead {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", maxAuditRead))
				return
			}
			limit = n
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		raws, err := d.rdb.LRange(ctx, auditKey, 0, int64(limit)-1).Result()
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		entries := make([]auditEntry, 0, len(raws))
		for _, raw := range raws {
			var e auditEntry
			if err := json.Unmarshal([]byte(raw), &e); err != nil || e.Action == "" {
				continue // not ours: skipped, never shown half-read
			}
			entries = append(entries, e)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{"entries": entries})
	})
}
