package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/presence"
)

// activeListed is how many active rooms the page and /rooms list.
const activeListed = 50

// roomPath is the page of room: "/" for the default room.
func roomPath(room string) string {
	if room == chat.DefaultRoom {
		return "/"
	}
	return "/r/" + room
}

// roomURL is the URL of one of room's actions ("post", "typing", …); the
// default room's post stays the tutorial's /post.
func roomURL(room, action string) string {
	if room == chat.DefaultRoom && action == "post" {
		return "/post"
	}
	return "/r/" + room + "/" + action
}

// roomOf returns the room a request names: the default room for routes
// without {room}, else the path's, canonical. A spelling that differs only
// in ASCII case is redirected (GET) to the canonical path; anything else is
// answered 400. ok false: the answer is written.
func roomOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	if !strings.Contains(r.Pattern, "{room}") { // "/", "/post": the default room
		return chat.DefaultRoom, true
	}
	raw := r.PathValue("room")
	room, ok := chat.CanonicalRoom(raw)
	switch {
	case !ok:
		httpError(w, http.StatusBadRequest, chat.RoomError(raw).Error())
		return "", false
	case room != raw && r.Method == http.MethodGet:
		u := *r.URL
		u.Path = roomPath(room)
		if rest, ok := cutRoomPrefix(r.URL.Path, raw); ok {
			u.Path = "/r/" + room + rest
		}
		u.RawPath = ""
		http.Redirect(w, r, u.RequestURI(), http.StatusMovedPermanently)
		return "", false
	case room != raw:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("room names are lowercase: use %q", room))
		return "", false
	}
	return room, true
}

// cutRoomPrefix returns what follows "/r/<raw>" in path.
func cutRoomPrefix(path, raw string) (string, bool) {
	return strings.CutPrefix(path, "/r/"+raw)
}

// safeNext returns where a login may send the user back to: the default
// room or a room page, nothing else (never another site, never a path that
// is not a page).
func safeNext(next string) string {
	if next == "/" {
		return next
	}
	if room, ok := cutRoomPrefix(next, ""); ok && chat.ValidRoom(room) {
		return "/r/" + room
	}
	return "/"
}

// roomPage is the chat page's data.
type roomPage struct {
	User, UID string
	Room      string
	Messages  []chat.Message
	LastID    string // Room's newest ID ("0-0": empty history)
	Position  string // composite position of every joined room
	Joined    []string
	Active    []broker.ActiveRoom
	MaxLen    int
	Degraded  bool
	SendError string // a plain form POST that failed: why (the page shows it)
	Draft     string // and the text it carried, kept in the box
	PostURL   string
	TypingURL string
	LeaveURL  string
	JoinURL   string
	// Reading the history: the page of older messages (none: the oldest
	// is shown), and in a history view (?before=, no live stream) the next
	// page towards the newest.
	HistoryURL, SearchURL string
	OlderURL, NewerURL    string
	Before                string // set: a history view
	// Moderation controls (moderation.js): an admin's, and an author's
	// window to delete or edit their messages, in seconds.
	Admin      bool
	EditWindow int
}

// joinRoom joins uid to room (rate-limited per user when it is new to
// them). It returns 0, or the status and sentence for the client.
func (d deps) joinRoom(ctx context.Context, w http.ResponseWriter, who identity, room string) (int, string) {
	joined, err := d.broker.Joined(ctx, who.UID, d.rooms.max)
	if err != nil {
		return http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment"
	}
	if slices.Contains(joined, room) {
		return 0, ""
	}
	wait, err := d.allow(ctx, "join:"+who.UID, d.rooms.joinsPerMin, d.rooms.joinsPerMin, time.Minute)
	if err != nil {
		return http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment"
	}
	if wait > 0 {
		w.Header().Set("Retry-After", retryAfter(wait))
		d.metrics.limit(limitJoins)
		return http.StatusTooManyRequests, fmt.Sprintf("you are joining rooms too fast; try again in %s s", retryAfter(wait))
	}
	if _, err := d.broker.Join(ctx, who.UID, room, d.rooms.max); err != nil {
		if errors.Is(err, broker.ErrTooManyRooms) {
			return http.StatusConflict, fmt.Sprintf("you are in %d rooms already, the most one person can join; leave one first", d.rooms.max)
		}
		return http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment"
	}
	if err := d.broker.Touch(ctx, room); err != nil {
		d.log.Debug("active rooms not updated", "err", err)
	}
	return 0, ""
}

// handleRoom serves GET / and GET /r/{room}: the room's page with its
// latest messages rendered on the server (opening a room joins it), or a
// redirect to /login that comes back here. With ?before=<id> it is a
// history view: the page of messages older than id, with links to the
// pages older and newer, and no live stream (the page says so and links to
// the newest), so a stream never starts from a position in the past.
//
// The page always carries the position its stream starts from (data-last-id
// for this room, data-position for every joined room), so nothing posted
// between rendering and subscribing is missed: the newest stored IDs, "0-0"
// for an empty history, and when Redis cannot be read, a position taken
// from the clock a little in the past (the stream then replays what was
// stored since; maxClockSkew covers the difference between this clock and
// Redis's).
func handleRoom(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		if r.PathValue("room") == chat.DefaultRoom {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return
		}
		var before chat.ID
		if s := r.URL.Query().Get("before"); s != "" {
			id, err := chat.ParseID(s)
			if err != nil {
				httpError(w, http.StatusBadRequest, "before must be a message ID (<ms>-<seq>)")
				return
			}
			before = id
		}
		who, ok := d.user(r)
		if !ok {
			target := "/login"
			if room != chat.DefaultRoom {
				target += "?next=" + url.QueryEscape(roomPath(room))
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		d.renderRoom(w, r, who, room, before, http.StatusOK, "", "")
	})
}

// renderRoom renders room's page for who with status; sendErr and draft
// are a failed plain form POST's sentence and text.
func (d deps) renderRoom(w http.ResponseWriter, r *http.Request, who identity, room string, before chat.ID, status int, sendErr, draft string) {
	p := roomPage{User: who.Name, UID: who.UID, Room: room, MaxLen: d.maxMessage, SendError: sendErr, Draft: draft,
		PostURL: roomURL(room, "post"), TypingURL: roomURL(room, "typing"),
		LeaveURL: roomURL(room, "leave"), JoinURL: roomURL(room, "join"),
		HistoryURL: "/r/" + room + "/history", SearchURL: "/r/" + room + "/search",
		Admin: d.mod.admins[who.UID], EditWindow: int(d.mod.editWindow.Seconds())}
	degrade := func(what string, err error) {
		d.log.Warn("chat page without "+what, "room", room, "err", err)
		p.Degraded = true
	}
	if status, msg := d.joinRoom(r.Context(), w, who, room); status == http.StatusServiceUnavailable {
		degrade("joined rooms", errors.New(msg))
	} else if status != 0 {
		httpError(w, status, msg)
		return
	}
	joined, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max)
	if err != nil {
		degrade("joined rooms", err)
	}
	if !slices.Contains(joined, room) {
		joined = chat.SortRooms(append(joined, room))
	}
	p.Joined = joined
	if p.Active, err = d.broker.Active(r.Context(), activeListed); err != nil {
		degrade("active rooms", err)
	}
	pageLen := d.pageHistory
	if !before.IsZero() {
		pageLen = 0 // only the position: the messages are older ones
	}
	msgs, pos, err := d.broker.Recent(r.Context(), room, pageLen)
	newest, err2 := d.broker.NewestMany(r.Context(), joined)
	if err == nil {
		err = err2
	}
	if err != nil {
		// The page still works: its stream catches up once Redis is
		// back, and says the chat is degraded meanwhile.
		degrade("history", err)
		clock := chat.ID{Ms: uint64(time.Now().Add(-maxClockSkew).UnixMilli())}
		pos = clock
		newest = make(map[string]chat.ID, len(joined))
		for _, j := range joined {
			newest[j] = clock
		}
	}
	newest[room] = pos // the messages rendered end exactly here
	if err == nil {
		more := len(msgs) > 0
		if !before.IsZero() {
			var page broker.Page
			page, err = d.broker.Before(r.Context(), room, before, d.pageHistory)
			msgs, more = page.Messages, page.More
			p.Before = before.String()
		} else if more {
			var page broker.Page
			page, err = d.broker.Before(r.Context(), room, mustID(msgs[0].ID), 0)
			more = page.More
		}
		if err != nil {
			degrade("history", err)
		} else {
			d.historyLinks(r.Context(), &p, msgs, more, before)
		}
	}
	p.Messages = msgs
	p.LastID = pos.String()
	if pos.IsZero() {
		p.LastID = "0-0" // before the first message
	}
	p.Position = chat.FormatPositions(joined, newest)
	render(w, d, status, "chat.html", p)
}

// handleRoomForm serves GET /r/?room=name, the join form without
// JavaScript: 303 to the room's page, or 400 with what is wrong.
func handleRoomForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := strings.TrimSpace(r.URL.Query().Get("room"))
		room, ok := chat.CanonicalRoom(raw)
		if !ok {
			httpError(w, http.StatusBadRequest, chat.RoomError(raw).Error())
			return
		}
		http.Redirect(w, r, roomPath(room), http.StatusSeeOther)
	})
}

// navigated reports whether a request is a page navigation (a plain form
// POST without JavaScript), which gets a redirect or a page instead of 204.
// The request says so itself: Sec-Fetch-Mode: navigate from browsers that
// send it; from older ones, no Sec-Fetch-Mode and an Accept that asks for
// HTML (a browser's form submission does; fetch and curl send */*); or the
// leave form's redirect=1.
func navigated(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "navigate":
		return true
	case "":
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			return true
		}
	}
	return r.PostForm.Get("redirect") == "1" // only once the form was read (bounded)
}

// roomAction is the start of every POST /r/{room}/…: the room (canonical),
// the logged-in user (else 401), and the form read, bounded. ok false: the
// answer is written.
func (d deps) roomAction(w http.ResponseWriter, r *http.Request) (room string, who identity, ok bool) {
	if room, ok = roomOf(w, r); !ok {
		return "", who, false
	}
	if who, ok = d.user(r); !ok {
		httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
		return "", who, false
	}
	if _, err := readForm(w, r); err != nil {
		status, msg := errorStatus(err)
		httpError(w, status, msg)
		return "", who, false
	}
	return room, who, true
}

// handleJoin serves POST /r/{room}/join: 204 (or 303 to the room).
func handleJoin(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, who, ok := d.roomAction(w, r)
		if !ok {
			return
		}
		if status, msg := d.joinRoom(r.Context(), w, who, room); status != 0 {
			httpError(w, status, msg)
			return
		}
		if navigated(r) {
			http.Redirect(w, r, roomPath(room), http.StatusSeeOther)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleLeave serves POST /r/{room}/leave: 204 (or 303 to /).
func handleLeave(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, who, ok := d.roomAction(w, r)
		if !ok {
			return
		}
		if err := d.broker.Leave(r.Context(), who.UID, room); err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
			return
		}
		if navigated(r) {
			// On to another room of theirs (the default room's page would
			// join it again), else the default room.
			next := "/"
			if joined, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max); err == nil && len(joined) > 0 {
				next = roomPath(joined[0])
			}
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleTyping serves POST /r/{room}/typing: tells the room's other
// streams, on every instance, that the user is typing. Never stored.
func handleTyping(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, who, ok := d.roomAction(w, r)
		if !ok {
			return
		}
		wait, err := d.allow(r.Context(), "typing:"+who.UID+":"+room, d.rooms.typingPerMin, 2, time.Minute)
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		if wait > 0 {
			w.Header().Set("Retry-After", retryAfter(wait))
			d.metrics.limit(limitTyping)
			httpError(w, http.StatusTooManyRequests, fmt.Sprintf("typing signals are limited to %d a minute; try again in %s s", d.rooms.typingPerMin, retryAfter(wait)))
			return
		}
		// A muted or banned person's typing is not shown either.
		if until, muted, err := d.restricted(r.Context(), who.UID, d.sessions.proxies.clientIP(r), "mute", "ban"); err == nil && muted {
			httpError(w, http.StatusForbidden, restrictionSentence("not shown as typing: you are muted", until))
			return
		}
		sig := chat.Signal{Kind: chat.SignalTyping, Room: room, User: who.Name, UID: who.UID}
		if err := d.broker.PublishSignal(r.Context(), sig); err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// onlineList is the data of a presence event and of /r/{room}/online.
type onlineList struct {
	Room  string            `json:"room"`
	Users []presence.Member `json:"users"`
	Count int               `json:"count"`
}

// handleOnline serves GET /r/{room}/online: who is in the room now, on
// every instance.
func handleOnline(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		if _, ok := d.user(r); !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		users, n, err := d.online.Online(r.Context(), room)
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		writeJSON(w, onlineList{Room: room, Users: nonNil(users), Count: n})
	})
}

// handleRooms serves GET /rooms: the user's rooms and the active ones.
func handleRooms(d deps) http.Handler {
	type joinedRoom struct {
		Room   string `json:"room"`
		LastID string `json:"last_id"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := d.user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		joined, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max)
		var newest map[string]chat.ID
		if err == nil {
			newest, err = d.broker.NewestMany(r.Context(), joined)
		}
		var active []broker.ActiveRoom
		if err == nil {
			active, err = d.broker.Active(r.Context(), activeListed)
		}
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		body := struct {
			Joined []joinedRoom        `json:"joined"`
			Active []broker.ActiveRoom `json:"active"`
		}{Joined: []joinedRoom{}, Active: nonNil(active)}
		for _, j := range joined {
			last := newest[j].String()
			if last == "" {
				last = "0-0" // before the first message
			}
			body.Joined = append(body.Joined, joinedRoom{j, last})
		}
		writeJSON(w, body)
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
