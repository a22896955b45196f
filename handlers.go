package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/fanout"
	"chatroom/internal/markup"
	"chatroom/internal/presence"
)

//go:embed templates static
var assets embed.FS

const (
	maxFormBytes   = 64 << 10 // a form larger than this is refused with 413
	minPasswordLen = 8
	maxPasswordLen = 72 // bcrypt uses at most 72 bytes
	bcryptCost     = 11
)

// limits are the abuse limits; a zero rate disables that limit.
type limits struct {
	postsPerSec    int // per user, shared by all instances
	postBurst      int
	loginsPerMin   int // per client IP
	passwordPerMin int // wrong-password attempts per name and IP
}

// deps is what the routes need. It is built once in run.
type deps struct {
	log         *slog.Logger
	pages       *template.Template
	sessions    *sessionStore
	markup      *markup.Renderer // message text → safe HTML, for events and history
	broker      *broker.Broker
	hub         *fanout.Hub
	rdb         redis.UniversalClient
	limiter     *redis_rate.Limiter
	limits      limits
	maxMessage  int   // characters
	pageHistory int64 // messages rendered into the chat page
	historyLen  int64 // messages kept per room: what a search reads at most
	stream      streamConfig
	rooms       roomLimits
	presence    presenceTracker
	online      *onlineReads // presence.Online, batched per room
	names       nameGuard
	static      map[string]*staticFile
	posts       postLimits   // flood limits on top of limits.postsPerSec
	slots       *streamSlots // stream caps per login and client address, all instances
	metrics     *metrics     // Prometheus counters of what handlers do
	mod         moderationConfig
	origins     publicURLs // trusted by the cross-origin check besides the request's own Host
}

// roomLimits bound what one user can do with rooms.
type roomLimits struct {
	max          int // rooms joined at once
	joinsPerMin  int // joins (and creations) per user and minute; 0: no limit
	typingPerMin int // typing signals per user, room and minute; 0: no limit
}

// presenceTracker is what the routes need of presence (internal/presence).
type presenceTracker interface {
	Arrive(room, uid, name string)
	Depart(room, uid string)
	Online(ctx context.Context, room string) ([]presence.Member, int, error)
}

// newServer builds the whole HTTP handler: routes plus the middleware every
// response gets.
func newServer(d deps) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, d)
	var h http.Handler = mux
	csrf := http.NewCrossOriginProtection()
	for _, o := range d.origins {
		if err := csrf.AddTrustedOrigin(o); err != nil { // validated in parseConfig
			d.log.Error("public url not trusted", "origin", o, "err", err)
		}
	}
	h = csrf.Handler(h)
	h = securityHeaders(h, d.sessions.proxies)
	h = recoverPanics(h, d.log)
	h = logRequests(h, d.log, d.sessions.proxies)
	return h
}

// addRoutes lists every route of the chat, in one place.
func addRoutes(mux *http.ServeMux, d deps) {
	mux.Handle("GET /{$}", handleRoom(d))
	mux.Handle("GET /r/{room}", handleRoom(d))
	mux.Handle("GET /r/{$}", handleRoomForm())
	mux.Handle("GET /login", handleLoginPage(d))
	mux.Handle("POST /login", handleLogin(d))
	mux.Handle("POST /logout", handleLogout(d))
	mux.Handle("POST /post", handlePost(d))
	mux.Handle("POST /r/{room}/post", handlePost(d))
	mux.Handle("POST /r/{room}/typing", handleTyping(d))
	mux.Handle("POST /r/{room}/join", handleJoin(d))
	mux.Handle("POST /r/{room}/leave", handleLeave(d))
	mux.Handle("GET /r/{room}/online", handleOnline(d))
	mux.Handle("GET /r/{room}/history", handleHistory(d))
	mux.Handle("GET /r/{room}/search", handleSearch(d))
	mux.Handle("GET /rooms", handleRooms(d))
	mux.Handle("GET /stream", handleStream(d))
	mux.Handle("GET /whoami", handleWhoami(d))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(d))
	mux.Handle("GET /static/", handleStatic(d.static))
	// Moderation (moderation.go): authors and admins on messages, admins on people.
	mux.Handle("POST /r/{room}/delete", handleModerateMessage(d, chat.OpDelete))
	mux.Handle("POST /r/{room}/edit", handleModerateMessage(d, chat.OpEdit))
	mux.Handle("POST /admin/mute", handleRestrict(d, "mute"))
	mux.Handle("POST /admin/ban", handleRestrict(d, "ban"))
	mux.Handle("POST /admin/kick", handleKick(d))
	mux.Handle("POST /admin/slowmode", handleSlowMode(d))
	mux.Handle("GET /admin/audit", handleAudit(d))
}

// parsePages parses the page templates; md renders message text in them.
func parsePages(md *markup.Renderer) (*template.Template, error) {
	return template.New("").Funcs(template.FuncMap{
		"clock": func(t time.Time) string { return t.UTC().Format("15:04") },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"text":  md.HTML, // a message's text as safe HTML: the only template.HTML of the pages
		// The full UTC date and time for a message's title; the page's
		// script replaces it with the reader's local one.
		"fulltime": func(t time.Time) string { return t.UTC().Format("Monday, 2 January 2006, 15:04:05 UTC") },
		"colour":   senderColour,
	}).ParseFS(assets, "templates/*.html")
}

// senderColours is the size of the name palette (--c0 … --c9 in
// style.css, each readable on every message background of both themes).
const senderColours = 10

// senderColour picks a sender's name colour from their uid: FNV-1a, 32
// bits, modulo the palette, as app.js's senderColour does, so a name has
// one colour on server-rendered, scroll-back and live messages.
func senderColour(uid string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(uid))
	return h.Sum32() % senderColours
}

// render executes a page into a buffer first, so a template error becomes a
// clean 500 instead of half a page.
func render(w http.ResponseWriter, d deps, status int, page string, data any) {
	var buf bytes.Buffer
	if err := d.pages.ExecuteTemplate(&buf, page, data); err != nil {
		d.log.Error("render page", "page", page, "err", err)
		httpError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// httpError answers with a plain-text message meant for people.
func httpError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

type loginPage struct {
	Error string
	User  string
	Next  string // where a successful login goes (a same-site room page)
}

// handleLoginPage serves GET /login[?next=/r/room].
func handleLoginPage(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, d, http.StatusOK, "login.html", loginPage{Next: safeNext(r.URL.Query().Get("next"))})
	})
}

// handleLogin serves POST /login: form field user (and optional password,
// which reserves the name, or proves it is yours).
func handleLogin(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := "/"
		fail := func(status int, msg, user string) {
			d.metrics.login(status)
			render(w, d, status, "login.html", loginPage{Error: msg, User: user, Next: next})
		}
		form, err := readForm(w, r)
		if err != nil {
			status, msg := errorStatus(err)
			fail(status, msg, "")
			return
		}
		if n, err := field(form, "next", false); err == nil && n != "" {
			next = safeNext(n)
		}
		raw, err := field(form, "user", true)
		if err != nil {
			fail(http.StatusBadRequest, err.Error(), "")
			return
		}
		password, err := field(form, "password", false)
		if err != nil {
			fail(http.StatusBadRequest, err.Error(), "")
			return
		}
		// Malformed names are refused before the rate limit, so honest
		// typos do not use up the budget; a cheap length check first keeps
		// huge names from costing normalisation time.
		if len(raw) > 8*chat.MaxNameLen {
			fail(http.StatusBadRequest, fmt.Sprintf("That name cannot be used: name is too long: the limit is %d characters.", chat.MaxNameLen), "")
			return
		}
		name, key, err := chat.CleanName(raw)
		if err != nil {
			fail(http.StatusBadRequest, "That name cannot be used: "+err.Error()+".", "")
			return
		}
		ip := d.sessions.proxies.clientIP(r)
		if wait, err := d.allow(r.Context(), "login:"+ip, d.limits.loginsPerMin, d.limits.loginsPerMin, time.Minute); err != nil {
			fail(http.StatusServiceUnavailable, "Logging in is not possible right now: the chat store is unavailable. Try again shortly.", "")
			return
		} else if wait > 0 {
			w.Header().Set("Retry-After", retryAfter(wait))
			d.metrics.limit(limitLogins)
			fail(http.StatusTooManyRequests, fmt.Sprintf("Too many logins from your address. Try again in %s.", retryAfter(wait)+" s"), "")
			return
		}
		if until, banned, err := d.restricted(r.Context(), key, ip, "ban"); err == nil && banned {
			fail(http.StatusForbidden, sentence(restrictionSentence("You cannot log in: you are banned from this chat", until)), name)
			return
		}
		who := identity{Name: name, UID: key, SID: rand.Text()}
		adm, rf := d.admit(r, who, password, ip)
		if rf != nil {
			if rf.retry > 0 {
				w.Header().Set("Retry-After", retryAfter(rf.retry))
			}
			if rf.limit != "" {
				d.metrics.limit(rf.limit)
			}
			fail(rf.status, rf.msg, name)
			return
		}
		if adm.proved {
			d.rememberDevice(w, r, key)
		}
		if err := d.sessions.login(w, r, who); err != nil {
			d.log.Error("login", "err", err)
			fail(http.StatusInternalServerError, "Could not start your session.", name)
			return
		}
		// Everyone starts in the default room (and may leave it later).
		if _, err := d.broker.Join(r.Context(), key, chat.DefaultRoom, d.rooms.max); err != nil && !errors.Is(err, broker.ErrTooManyRooms) {
			d.log.Warn("login: default room not joined", "err", err)
		}
		d.metrics.login(http.StatusSeeOther)
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

func userKey(key string) string { return "chat:user:" + key }

// user returns the request's identity, unless it has no valid session or
// that session was logged out. Sessions live in the cookie; a logout is
// remembered in Redis until the cookie would have expired anyway, so a copy
// of the cookie stops working too. When Redis cannot answer, the cookie
// alone decides (the user then sees the chat degraded, not logged out).
func (d deps) user(r *http.Request) (identity, bool) {
	who, ok := d.sessions.get(r)
	if !ok {
		return who, false
	}
	loggedOut, err := d.broker.LoggedOut(r.Context(), who.SID)
	if err != nil {
		d.log.Debug("logout check failed", "err", err)
	}
	return who, !loggedOut
}

// handleLogout serves POST /logout: the session ends everywhere, its open
// streams on every instance are closed, and the cookie is deleted.
func handleLogout(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if who, ok := d.sessions.get(r); ok {
			if err := d.broker.EndSession(r.Context(), who.SID, d.sessions.maxAge); err != nil {
				d.log.Warn("logout not recorded: the cookie is deleted, but a copy of it stays valid", "err", err)
			}
		}
		d.sessions.logout(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

// handlePost serves POST /post (the default room) and POST /r/{room}/post:
// form field message, answered 204 once Redis has stored and published it.
// Posting in a room other than the default one needs the user to have
// joined it, so a post cannot create rooms past the join limits.
func handlePost(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, ok := roomOf(w, r)
		if !ok {
			return
		}
		who, ok := d.user(r)
		if !ok {
			if navigated(r) {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(roomPath(room)), http.StatusSeeOther)
				return
			}
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		form, err := readForm(w, r)
		nav := navigated(r)
		raw := form.Get("message")
		// A plain form POST (no JavaScript) gets the page back with the
		// error shown and its text kept; fetch and curl get the sentence.
		fail := func(status int, msg string) {
			if nav {
				d.renderRoom(w, r, who, room, chat.ID{}, status, sentence(msg), raw)
				return
			}
			httpError(w, status, msg)
		}
		if err != nil {
			fail(errorStatus(err))
			return
		}
		if room != chat.DefaultRoom {
			joined, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max)
			if err != nil {
				w.Header().Set("Retry-After", "2")
				fail(http.StatusServiceUnavailable, "message not sent: the chat store is unavailable, try again in a moment")
				return
			}
			if !slices.Contains(joined, room) {
				fail(http.StatusForbidden, fmt.Sprintf("message not sent: join the room first (open %s)", roomPath(room)))
				return
			}
		}
		raw, err = field(form, "message", true)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		clientID, err := field(form, "client_id", false)
		if err == nil && !validClientID(clientID) {
			err = errors.New("the field \"client_id\" must be 1 to 64 letters, digits, '-' or '_'")
		}
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		text, err := chat.CleanMessage(raw, d.maxMessage)
		if err == nil {
			err = checkLines(text, d.posts.maxLines)
		}
		if err != nil {
			fail(errorStatus(err))
			return
		}
		if until, muted, err := d.restricted(r.Context(), who.UID, d.sessions.proxies.clientIP(r), "mute", "ban"); err != nil {
			d.log.Warn("mute check failed; posting anyway", "err", err)
		} else if muted {
			fail(http.StatusForbidden, restrictionSentence("message not sent: you are muted", until))
			return
		}
		wait, err := d.allow(r.Context(), "post:"+who.UID, d.limits.postsPerSec, d.limits.postBurst, time.Second)
		if err != nil {
			d.log.Warn("rate limit check failed", "err", err)
			w.Header().Set("Retry-After", "2")
			fail(http.StatusServiceUnavailable, "message not sent: the chat store is unavailable, try again in a moment")
			return
		}
		if wait > 0 {
			w.Header().Set("Retry-After", retryAfter(wait))
			d.metrics.limit(limitPostsUser)
			fail(http.StatusTooManyRequests, fmt.Sprintf("slow down: you are sending messages too fast (limit %d per second); try again in %s s", d.limits.postsPerSec, retryAfter(wait)))
			return
		}
		if refused, err := d.checkFloods(r.Context(), who.UID, room, limitAddr(d.sessions.proxies.clientIP(r))); err != nil {
			d.log.Warn("flood limit check failed", "err", err)
			w.Header().Set("Retry-After", "2")
			fail(http.StatusServiceUnavailable, "message not sent: the chat store is unavailable, try again in a moment")
			return
		} else if refused != nil {
			d.metrics.limit(refused.kind)
			refusePost(w, fail, refused)
			return
		}
		msg := chat.Message{User: who.Name, UID: who.UID, Text: text, Time: time.Now().UTC()}
		// The page sends a client_id per typed message, kept when it
		// resends after an error: a resend of a message that was in fact
		// stored is then not stored twice. Without one, a random token
		// still makes go-redis's own retries harmless.
		token := rand.Text()
		if clientID != "" {
			token = who.UID + ":" + clientID
		}
		start := time.Now()
		if _, err := d.broker.Publish(r.Context(), room, token, msg); err != nil {
			d.log.Warn("post failed", "err", err)
			if errors.Is(err, broker.ErrNotReplicated) {
				fail(http.StatusServiceUnavailable, "message not confirmed: it may appear in the chat, but the store could not guarantee it is safe; check before sending it again")
				return
			}
			w.Header().Set("Retry-After", "2")
			fail(http.StatusServiceUnavailable, "message not sent: the chat store is unavailable, try again in a moment")
			return
		}
		d.metrics.publishedIn(time.Since(start))
		if err := d.broker.Touch(r.Context(), room); err != nil {
			d.log.Debug("active rooms not updated", "err", err)
		}
		if nav {
			// Back to the room: a 204 would leave the browser on a stale
			// page, inviting a second copy.
			http.Redirect(w, r, roomPath(room), http.StatusSeeOther)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// sentence capitalises msg's first letter and ends it with a full stop,
// for showing on a page.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// validClientID accepts an empty ID (none sent) or 1..64 of [A-Za-z0-9_-].
func validClientID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// allow takes one token from the named GCRA bucket in Redis, shared by all
// instances. It returns how long to wait when over the limit (0: allowed).
func (d deps) allow(ctx context.Context, key string, rate, burst int, per time.Duration) (time.Duration, error) {
	if rate <= 0 || d.limiter == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := d.limiter.Allow(ctx, key, redis_rate.Limit{Rate: rate, Burst: max(burst, 1), Period: per})
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", key, err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// handleWhoami serves GET /whoami: the logged-in user as JSON, or 401. The
// page asks it to tell "log in again" from "server busy" when its stream fails.
func handleWhoami(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := d.user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]string{"user": who.Name, "uid": who.UID})
	})
}

// handleHealthz serves GET /healthz: the process is alive.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
}

// handleReadyz serves GET /readyz: 200 "ok" only while messages really
// flow through Redis (the subscription's own probe came back), else 503
// "degraded". Nothing else: the counters are in /metrics, which is not
// for everyone.
func handleReadyz(d deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !d.broker.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "degraded")
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// readForm parses a url-encoded or multipart form body of at most
// maxFormBytes.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case r.Header.Get("Content-Type") == "":
		// The tutorial's clients always send a form; an empty body just
		// has no fields, reported below as a missing field.
	case err != nil:
		return nil, chat.BadInput(http.StatusUnsupportedMediaType, "send the form as application/x-www-form-urlencoded or multipart/form-data")
	case ct == "multipart/form-data":
		if err := r.ParseMultipartForm(maxFormBytes); err != nil {
			return nil, formError(err)
		}
		return r.PostForm, nil
	case ct != "application/x-www-form-urlencoded":
		return nil, chat.BadInput(http.StatusUnsupportedMediaType, "send the form as application/x-www-form-urlencoded or multipart/form-data, not %s", ct)
	}
	if err := r.ParseForm(); err != nil {
		return nil, formError(err)
	}
	return r.PostForm, nil
}

func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || errors.Is(err, multipart.ErrMessageTooLarge) {
		return chat.BadInput(http.StatusRequestEntityTooLarge, "the request is too large: at most %d KiB", maxFormBytes>>10)
	}
	return chat.BadInput(http.StatusBadRequest, "the form could not be read: %v", err)
}

// field returns the single value of a form field. A field given twice is
// refused rather than guessing which one was meant.
func field(form url.Values, name string, required bool) (string, error) {
	vs := form[name]
	switch {
	case len(vs) > 1:
		return "", fmt.Errorf("the field %q was given %d times; send it once", name, len(vs))
	case len(vs) == 0 && required:
		return "", fmt.Errorf("the field %q is missing", name)
	case len(vs) == 0:
		return "", nil
	}
	return vs[0], nil
}

// errorStatus maps an error to the status and message the client sees.
func errorStatus(err error) (int, string) {
	var ie *chat.InputError
	if errors.As(err, &ie) {
		return ie.Status, ie.Msg
	}
	return http.StatusBadRequest, err.Error()
}

// securityHeaders sets the headers every response carries: a strict CSP (no
// inline script or style, no framing), no MIME sniffing, no referrer leaks,
// and, where the browser honours it (a trustworthy origin: https or
// localhost), a same-origin opener policy; on plain http to a LAN name
// Chromium ignores it and logs an error on every page.
func securityHeaders(next http.Handler, proxies proxyTrust) http.Handler {
	// Trusted Types: the page may only assign HTML through its one policy,
	// "chat", which passes the server-rendered message HTML.
	const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; " +
		"require-trusted-types-for 'script'; trusted-types chat"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if trustworthyOrigin(r, proxies) {
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
		}
		next.ServeHTTP(w, r)
	})
}

// trustworthyOrigin reports whether the browser sees the page's origin as
// potentially trustworthy: reached over https, or on a loopback name.
func trustworthyOrigin(r *http.Request, proxies proxyTrust) bool {
	if proxies.isHTTPS(r) {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// recoverPanics turns a panic in a handler into a logged 500 rather than a
// dropped connection. It must never fire; if it does, that is a bug.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "method", r.Method, "uri", r.URL.RequestURI(), "panic", v)
				httpError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
