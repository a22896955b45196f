package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
)

// Reading the kept history: pages before an ID (JSON, and server-rendered
// for pages without JavaScript) and search.
const (
	historyPageDefault = 50  // messages per JSON page unless ?limit= says otherwise
	historyPageMax     = 100 // the most one page holds: one bounded XREVRANGE
	searchHits         = 50  // a search stops after this many hits
	searchMaxQuery     = 200 // characters of ?q=
	searchTimeout      = 2 * time.Second
	searchesPerMin     = 10 // per user: a search may read the whole kept history
)

// historyLink is the page of room showing what is older than before: the
// room's page with ?before= ("/?before=" for the default room).
func historyLink(room string, before chat.ID) string {
	return roomPath(room) + "?before=" + before.String()
}

// mayRead answers a request for room's history: the user must be logged in
// and, for rooms other than the default, have joined it (as posting does).
// ok false: the answer is written.
func (d deps) mayRead(w http.ResponseWriter, r *http.Request, room string) (identity, bool) {
	who, ok := d.user(r)
	if !ok {
		httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
		return who, false
	}
	if room == chat.DefaultRoom {
		return who, true
	}
	joined, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max)
	if err != nil {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; try again in a moment")
		return who, false
	}
	if !slices.Contains(joined, room) {
		httpError(w, http.StatusForbidden, fmt.Sprintf("join the room first (open %s)", roomPath(room)))
		return who, false
	}
	return who, true
}

// historyPage is the JSON of GET /r/{room}/history.
type historyPage struct {
	Room     string            `json:"room"`
	Messages []renderedMessage `json:"messages"` // oldest first, with their html as in message events
	Before   string            `json:"before"`   // the next (older) page's ?before=; "" when the page is empty
	More     bool              `json:"more"`
}

// handleHistory serves GET /r/{room}/history?before=<id>[&limit=n] (the
// default room's under /r/chat/history): up to limit (default 50, at most
// 100) messages older than before, oldest first.
func handleHistory(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		if _, ok := d.mayRead(w, r, room); !ok {
			return
		}
		q := r.URL.Query()
		before, err := chat.ParseID(q.Get("before"))
		if err != nil {
			httpError(w, http.StatusBadRequest, "before must be a message ID (<ms>-<seq>)")
			return
		}
		limit := historyPageDefault
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > historyPageMax {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1 to %d", historyPageMax))
				return
			}
			limit = n
		}
		p, err := d.broker.Before(r.Context(), room, before, int64(limit))
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		body := historyPage{Room: room, Messages: make([]renderedMessage, 0, len(p.Messages)), More: p.More}
		for _, m := range p.Messages {
			body.Messages = append(body.Messages, renderedMessage{Message: m, HTML: d.markup.HTML(m.Text)})
		}
		if !p.Oldest.IsZero() {
			body.Before = p.Oldest.String()
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, body)
	})
}

// searchPage is the data of search.html.
type searchPage struct {
	User, Room, Query string
	RoomURL, Action   string
	Hits              []searchHit
	Searched          bool
	Complete          bool
	Scanned           int64
}

type searchHit struct {
	chat.Message
	Link string // the hit's page, scrolled to it
}

// handleSearch serves GET /r/{room}/search?q=: the room's kept messages
// containing q (ignoring case), newest first, as a page; each hit links to
// the history page that ends with it. Rate-limited per user.
func handleSearch(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		who, ok := d.mayRead(w, r, room)
		if !ok {
			return
		}
		q := strings.TrimSpace(r.URL.Query().Get("q"))
		p := searchPage{User: who.Name, Room: room, Query: q, RoomURL: roomPath(room), Action: "/r/" + room + "/search"}
		if q == "" {
			render(w, d, http.StatusOK, "search.html", p)
			return
		}
		if len([]rune(q)) > searchMaxQuery {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("a search is at most %d characters", searchMaxQuery))
			return
		}
		wait, err := d.allow(r.Context(), "search:"+who.UID, searchesPerMin, searchesPerMin, time.Minute)
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		if wait > 0 {
			w.Header().Set("Retry-After", retryAfter(wait))
			d.metrics.limit(limitSearches)
			httpError(w, http.StatusTooManyRequests, fmt.Sprintf("searches are limited to %d a minute; try again in %s s", searchesPerMin, retryAfter(wait)))
			return
		}
		res, err := d.broker.Search(r.Context(), room, q, broker.SearchLimits{Hits: searchHits, Scan: d.historyLen, Timeout: searchTimeout})
		if err != nil {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable")
			return
		}
		p.Searched, p.Complete, p.Scanned = true, res.Complete, res.Scanned
		for _, m := range res.Hits {
			id, err := chat.ParseID(m.ID)
			if err != nil {
				continue
			}
			// The page before the ID just after the hit ends with the hit.
			next := chat.ID{Ms: id.Ms, Seq: id.Seq + 1}
			p.Hits = append(p.Hits, searchHit{m, historyLink(room, next) + "#m-" + m.ID})
		}
		render(w, d, http.StatusOK, "search.html", p)
	})
}

// historyLinks fills the history links of a room page showing msgs: Older
// when anything is older than them, and for a history view (before set)
// Newer, the next page towards the newest (the room's own page at the end).
func (d deps) historyLinks(ctx context.Context, p *roomPage, msgs []chat.Message, more bool, before chat.ID) {
	if more && len(msgs) > 0 {
		if id, err := chat.ParseID(msgs[0].ID); err == nil {
			p.OlderURL = historyLink(p.Room, id)
		}
	}
	if before.IsZero() {
		return
	}
	p.NewerURL = roomPath(p.Room)
	if len(msgs) == 0 {
		return
	}
	last, err := chat.ParseID(msgs[len(msgs)-1].ID)
	if err != nil {
		return
	}
	if next, ok, err := d.broker.NewerPage(ctx, p.Room, last, d.pageHistory); err == nil && ok {
		p.NewerURL = historyLink(p.Room, next)
	}
}

// mustID parses an ID that came from the broker (always valid).
func mustID(s string) chat.ID {
	id, _ := chat.ParseID(s)
	return id
}
