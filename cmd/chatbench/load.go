package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chatroom/internal/chat"
	"chatroom/internal/sse"
)

// Tuning constants.
const (
	readyTimeout   = 30 * time.Second       // a started server or redis must be ready by then
	readyPoll      = 50 * time.Millisecond  // /readyz poll interval
	drainPoll      = 5 * time.Millisecond   // how often the drain wait checks the delivery count
	stopGrace      = 10 * time.Second       // subscribers must have ended this long after cancel
	reconnectDelay = 50 * time.Millisecond  // first reconnect backoff, doubled up to maxBackoff
	maxBackoff     = 1 * time.Second        // cap of the reconnect backoff
	loginTimeout   = 10 * time.Second       // one POST /login
	scheduleLead   = 20 * time.Millisecond  // first POST this long after sending is set up
	lagWarn        = 100 * time.Millisecond // warn when the sender falls this far behind
	otherWarn      = 0.2                    // warn when other processes used this many CPUs meanwhile
	maxSSELine     = 1 << 20                // longest SSE line (and event data) a stream may send
	connPoll       = 10 * time.Millisecond  // how often a wait for connects checks
	maxWaitPolls   = 1_000_000              // bound on the polls of any wait loop (each is also bounded in time)
	drainQuiet     = 200 * time.Millisecond // storm: deliveries must have stopped this long before the drain ends
	onlinePoll     = 100 * time.Millisecond // storm: interval of GET /r/{room}/online per room
	onlineConc     = 16                     // storm: online-list requests in flight at most
	maxOnlineBody  = 1 << 20                // storm: longest online list read
	// senderRooms is the most rooms a sender joins: the server's cap on the
	// rooms one user may have joined (-max-rooms, 20 by default).
	senderRooms = 20
)

// bench holds what lives across scenarios: the HTTP clients, the built
// server binary and the temp dir.
type bench struct {
	cfg       *config
	logf      func(string, ...any)
	tr        *http.Transport
	stream    *http.Client // no timeout: streams last the whole run
	poster    *http.Client
	login     *http.Client // does not follow the 303
	dir       string       // logs and binary
	removeDir bool
	serverBin string
	procs     procSet
}

func newBench(cfg *config, logf func(string, ...any)) (*bench, error) {
	b := &bench{cfg: cfg, logf: logf}
	if cfg.logDir != "" {
		if err := os.MkdirAll(cfg.logDir, 0o755); err != nil {
			return nil, err
		}
		b.dir = cfg.logDir
	} else {
		d, err := os.MkdirTemp("", "chatbench-")
		if err != nil {
			return nil, err
		}
		b.dir, b.removeDir = d, true
	}
	b.tr = &http.Transport{
		Proxy:                 nil, // loopback only; never go through a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:          0, // no global limit
		MaxIdleConnsPerHost:   512,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		DisableCompression:    true,
		ReadBufferSize:        4096,
		WriteBufferSize:       1024,
	}
	b.stream = &http.Client{Transport: b.tr}
	b.poster = &http.Client{Transport: b.tr, Timeout: cfg.postTimeout}
	b.login = &http.Client{Transport: b.tr, Timeout: loginTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b.serverBin = cfg.serverBin
	return b, nil
}

func (b *bench) close() {
	b.procs.stopAll()
	b.tr.CloseIdleConnections()
	if b.removeDir {
		_ = os.RemoveAll(b.dir)
	}
}

// env is the system under test for one run.
type env struct {
	targets    []string
	serverPIDs []int // 0 where unknown
	redisPID   int   // 0 when unknown
	servers    []*proc
	redis      *proc
}

func (e *env) stop() {
	for _, p := range e.servers {
		p.stop(5 * time.Second)
	}
	if e.redis != nil {
		e.redis.stop(5 * time.Second)
	}
}

// tails returns the last log lines of every started process.
func (e *env) tails() string {
	var sb strings.Builder
	for _, p := range append(slices.Clone(e.servers), e.redis) {
		if p == nil {
			continue
		}
		fmt.Fprintf(&sb, "--- %s (%s):\n%s\n", p.name, p.logPath, p.logTail(15))
	}
	return sb.String()
}

// startEnv starts (or finds) Redis and the K chat servers.
func (b *bench) startEnv(ctx context.Context, s scenario, runNo int) (*env, error) {
	cfg := b.cfg
	e := &env{}
	cpus := ""
	if cfg.taskset {
		cpus = "0"
	}
	if len(cfg.targets) > 0 {
		e.targets = cfg.targets
		for _, t := range cfg.targets {
			u, _ := url.Parse(t)
			port, _ := strconv.Atoi(u.Port())
			pid := listenerPID(port)
			if pid == 0 {
				b.logf("warning: no process found listening on %s: its CPU and RSS are not measured", t)
			}
			e.serverPIDs = append(e.serverPIDs, pid)
		}
		if err := b.waitReady(ctx, e); err != nil {
			return nil, err
		}
		if cfg.redisURL != "" {
			if port, _ := checkRedisURL(cfg.redisURL); port != "" {
				p, _ := strconv.Atoi(port)
				e.redisPID = listenerPID(p)
			}
		}
		return e, nil
	}

	redisURL := cfg.redisURL
	if redisURL == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("redis-%s-%d", s.Name, runNo)
		p, err := startProc(name, filepath.Join(b.dir, name+".log"), cpus, []string{
			"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--maxclients", "10000",
		})
		if err != nil {
			return nil, fmt.Errorf("%w (is redis-server installed?)", err)
		}
		b.procs.add(p)
		e.redis = p
		e.redisPID = p.pid()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitRedis(ctx, addr, p, readyTimeout); err != nil {
			e.stop()
			return nil, err
		}
		redisURL = "redis://" + addr + "/0"
	} else if port, _ := checkRedisURL(redisURL); port != "" {
		p, _ := strconv.Atoi(port)
		e.redisPID = listenerPID(p)
	}

	if b.serverBin == "" {
		root := cfg.root
		if root == "" {
			wd, err := os.Getwd()
			if err != nil {
				e.stop()
				return nil, err
			}
			if root, err = findModuleRoot(wd); err != nil {
				e.stop()
				return nil, err
			}
		}
		b.logf("building the server in %s", root)
		bin, err := buildServer(ctx, root, b.dir)
		if err != nil {
			e.stop()
			return nil, err
		}
		b.serverBin = bin
	}
	for i := range s.Instances {
		port, err := freePort()
		if err != nil {
			e.stop()
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		name := fmt.Sprintf("server-%s-%d-%d", s.Name, runNo, i)
		argv := append([]string{b.serverBin, "-addr", addr, "-redis", redisURL,
			"-rate-posts", "0", "-rate-logins", "0", "-max-streams", "20000", "-streams-per-session", "0",
			"-streams-per-addr", "0", "-conns-per-addr", "0", "-rate-posts-addr", "0", "-rate-posts-room", "0", "-new-name-posts", "0"}, s.ServerArgs...)
		argv = append(argv, cfg.serverArgs...)
		p, err := startProc(name, filepath.Join(b.dir, name+".log"), cpus, argv)
		if err != nil {
			e.stop()
			return nil, err
		}
		b.procs.add(p)
		e.servers = append(e.servers, p)
		e.serverPIDs = append(e.serverPIDs, p.pid())
		e.targets = append(e.targets, "http://"+addr)
	}
	if err := b.waitReady(ctx, e); err != nil {
		err = fmt.Errorf("%w\n%s", err, e.tails())
		e.stop()
		return nil, err
	}
	return e, nil
}

// waitReady polls GET /readyz on every target until it answers 200.
func (b *bench) waitReady(ctx context.Context, e *env) error {
	deadline := time.Now().Add(readyTimeout)
	for i, t := range e.targets {
		for n := 0; ; n++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t+"/readyz", nil)
			resp, err := b.login.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			if i < len(e.servers) && e.servers[i].exited() {
				return fmt.Errorf("server %s exited: %v", e.servers[i].name, e.servers[i].waitErr)
			}
			if time.Now().After(deadline) || n > int(readyTimeout/readyPoll)+10 {
				return fmt.Errorf("%s/readyz not ready after %v: %v", t, readyTimeout, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(readyPoll):
			}
		}
	}
	return nil
}

// session is a logged-in user on one instance.
type session struct {
	target  string
	user    string // the name it logged in with
	cookies []*http.Cookie
}

func (s *session) addCookies(req *http.Request) {
	for _, c := range s.cookies {
		req.AddCookie(c)
	}
}

// update takes the cookies an answer set: each replaces the session's
// cookie of its name (one with MaxAge < 0 deletes it).
func (s *session) update(set []*http.Cookie) {
	for _, c := range set {
		s.cookies = slices.DeleteFunc(s.cookies, func(o *http.Cookie) bool { return o.Name == c.Name })
		if c.MaxAge >= 0 {
			s.cookies = append(s.cookies, c)
		}
	}
}

// forEach calls fn(i) for every i in [0, n), at most conc at a time. It
// returns how many calls failed and the first error, or ctx's error.
func forEach(ctx context.Context, n, conc int, fn func(i int) error) error {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards failed and first
	var failed int
	var first error
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if failed++; first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return fmt.Errorf("%d of %d failed; first: %w", failed, n, first)
	}
	return nil
}

// loginAll logs in users[i] on targets[i] with bounded concurrency.
func (b *bench) loginAll(ctx context.Context, users, targets []string) ([]session, error) {
	out := make([]session, len(users))
	err := forEach(ctx, len(users), b.cfg.loginConc, func(i int) (err error) {
		out[i], err = b.loginOne(ctx, users[i], targets[i])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("logins: %w", err)
	}
	return out, nil
}

func (b *bench) loginOne(ctx context.Context, user, target string) (session, error) {
	form := url.Values{"user": {user}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/login", strings.NewReader(form))
	if err != nil {
		return session{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.login.Do(req)
	if err != nil {
		return session{}, fmt.Errorf("login %s: %w", user, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode >= 400 || len(cookies) == 0 {
		return session{}, fmt.Errorf("login %s on %s: %s, %d cookies: %.200s", user, target, resp.Status, len(cookies), body)
	}
	return session{target: target, user: user, cookies: cookies}, nil
}

// cast is who takes part in one run, logged in and in their rooms.
type cast struct {
	senders   []session
	subUsers  []session // subscriber j is subUsers[j mod len]
	observers []session // storm: observer r watches room r
}

// prepare logs in the run's users, each on the instance it uses, and with
// rooms puts every subscriber user (and observer) in its room alone: join
// it, leave the default room joined at login.
func (b *bench) prepare(ctx context.Context, s scenario, st *runState, targets []string) (*cast, error) {
	k := len(targets)
	tag := string(st.tag)
	nSend := st.senders(b.cfg.senders)
	nUsers := s.Subs // with rooms every subscriber is its own user
	if s.Rooms == 0 {
		nUsers = min(b.cfg.subUsers, s.Subs)
		nUsers = (nUsers + k - 1) / k * k // a multiple of k: subscriber j on instance j mod k
	}
	nObs := 0
	if s.Storm {
		nObs = st.nRooms()
	}
	var users, where []string
	for i := range nSend {
		users = append(users, "p"+tag+strconv.Itoa(i))
		where = append(where, targets[i%k])
	}
	for i := range nUsers {
		users = append(users, "s"+tag+strconv.Itoa(i))
		where = append(where, targets[i%k])
	}
	for r := range nObs {
		users = append(users, "o"+tag+strconv.Itoa(r))
		where = append(where, targets[r%k])
	}
	b.logf("logging in %d senders, %d subscriber users and %d observers", nSend, nUsers, nObs)
	sessions, err := b.loginAll(ctx, users, where)
	if err != nil {
		return nil, err
	}
	c := &cast{senders: sessions[:nSend], subUsers: sessions[nSend : nSend+nUsers], observers: sessions[nSend+nUsers:]}
	if s.Rooms == 0 {
		return c, nil
	}
	b.logf("moving %d users into %d rooms", len(sessions), st.nRooms())
	err = forEach(ctx, len(sessions), b.cfg.loginConc, func(i int) error {
		var rooms []string
		switch j := i - nSend; {
		case i < nSend: // a room's posts need it joined: sender i posts to rooms r ≡ i (mod S)
			for r := i; r < st.nRooms(); r += nSend {
				rooms = append(rooms, st.roomName(r))
			}
		case j < nUsers: // subscriber j (and j + U, …): room j mod R
			rooms = []string{st.roomName(st.roomOf(j))}
		default: // observer r: room r
			rooms = []string{st.roomName(j - nUsers)}
		}
		// Leave the default room first: it counts in the joined rooms' cap.
		if err := b.roomAction(ctx, &sessions[i], chat.DefaultRoom, "leave"); err != nil {
			return err
		}
		for _, room := range rooms {
			if err := b.roomAction(ctx, &sessions[i], room, "join"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("joining rooms: %w", err)
	}
	return c, nil
}

// runState is shared by the subscribers and senders of one run.
type runState struct {
	tag   []byte // run tag in every message text: ignore other runs' messages
	msgs  int
	rooms []string // the run's rooms; nil: the default room only
	// storm: a subscriber expects only the messages posted after its
	// stream went live (it connects while they are posted).
	storm    bool
	ids      []atomic.Pointer[chat.ID] // stream ID seen first for each message
	unique   atomic.Int64              // unique deliveries of this run's messages
	idErrs   atomic.Int64              // a message seen with two different IDs
	lastRecv atomic.Int64              // unix ns of the latest delivery
	conns    atomic.Int64              // subscribers connected (retry: read)
	lastConn atomic.Int64              // unix ns of the latest first connect

	errMu    sync.Mutex // guards firstErr
	firstErr error      // first error of a subscriber that never connected
}

// nRooms is the number of rooms messages and subscribers are spread over.
func (st *runState) nRooms() int { return max(len(st.rooms), 1) }

// roomOf is the room index of message seq (and of subscriber seq).
func (st *runState) roomOf(seq int) int { return seq % st.nRooms() }

// roomName is the name of room r ("" is never returned).
func (st *runState) roomName(r int) string {
	if st.rooms == nil {
		return chat.DefaultRoom
	}
	return st.rooms[r]
}

// senders is the number of senders S for a wish of want: at most one per
// message, and with rooms at most one per room but enough that none joins
// more than senderRooms rooms.
func (st *runState) senders(want int) int {
	n := min(want, max(st.msgs, 1))
	if st.rooms != nil {
		n = min(max(n, (len(st.rooms)+senderRooms-1)/senderRooms), len(st.rooms))
	}
	return n
}

// senderOf is the sender of message i of n senders: i mod S, and with
// rooms that of its room, room mod S (the rooms the sender joined).
func (st *runState) senderOf(i, n int) int {
	if st.rooms == nil {
		return i % n
	}
	return st.roomOf(i) % n
}

// expects reports whether subscriber s must receive message q, posted as p:
// a message of its room, and in a storm one whose POST started after the
// stream went live (its room's presence event had been read).
func (st *runState) expects(s *subscriber, q int, p postRecord) bool {
	if st.roomOf(q) != s.room {
		return false
	}
	if !st.storm {
		return true
	}
	live := s.liveAt.Load()
	return live != 0 && live < p.start
}

// subErr records a subscriber's error for the connect-timeout message.
func (st *runState) subErr(err error) {
	st.errMu.Lock()
	if st.firstErr == nil {
		st.firstErr = err
	}
	st.errMu.Unlock()
}

// subscriber is one SSE stream. Its fields are written only by its own
// goroutine and read after that goroutine ended, except the atomics.
type subscriber struct {
	sess      session
	room      int      // index of its room (0 without rooms)
	seen      []uint64 // bitset over message sequence numbers
	seqs      []uint32 // sequence numbers in receive order
	lats      []uint32 // latency in µs, same order
	dups      int64
	idOrder   int64 // stream ID not above the previous one
	foreign   int64
	wrongRoom int64 // messages of this run posted to another room
	reconn    int64
	discon    int64
	notices   int64
	statuses  int64
	lastID    chat.ID
	conned    bool
	err       error

	// liveAt is the unix ns at which the first presence event of its room
	// was read: the stream was live by then (presence follows the replay).
	liveAt atomic.Int64
	// online, for an observer, follows its room's online list.
	online *onlineTracker

	stalled bool   // never reads after connecting (runStalled)
	closed  bool   // stalled: the server had closed the stream by the drain
	told    string // stalled: the reason of the disconnect event it got, if any
}

// run reads the stream, reconnecting with last_event_id when it ends,
// until ctx is done. connected is called once, at the first retry: line.
func (s *subscriber) run(ctx context.Context, b *bench, st *runState, connected func()) {
	var p *sse.Reader
	backoff := reconnectDelay
	for attempt := 0; attempt <= b.cfg.maxReconnects; attempt++ {
		if attempt > 0 {
			s.reconn++
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
		}
		var last []byte
		if p != nil {
			last = p.LastEventID()
		}
		req, err := streamRequest(ctx, s.sess, last)
		if err != nil {
			s.err = err
			return
		}
		resp, err := b.stream.Do(req)
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			return
		}
		if err == nil {
			err = checkStream(resp)
		}
		if err != nil {
			s.err = err
			if !s.conned {
				st.subErr(err)
			}
			continue
		}
		if p == nil {
			p = sse.NewReaderSize(resp.Body, b.cfg.readBuf, maxSSELine)
		} else {
			p.Reset(resp.Body)
		}
		err = s.read(p, st, connected)
		resp.Body.Close()
		if ctx.Err() != nil {
			return
		}
		s.err = fmt.Errorf("stream ended: %w", err)
	}
}

// streamRequest is the GET /stream of sess, resuming after the last event
// ID when one is given (as the query parameter, like a page's first
// connection, and as Last-Event-ID, like EventSource).
func streamRequest(ctx context.Context, sess session, last []byte) (*http.Request, error) {
	u := sess.target + "/stream"
	if len(last) > 0 {
		u += "?last_event_id=" + url.QueryEscape(string(last))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if len(last) > 0 {
		req.Header.Set("Last-Event-ID", string(last))
	}
	sess.addCookies(req)
	return req, nil
}

// checkStream returns an error, and closes the body, unless resp opens an
// event stream.
func checkStream(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	return fmt.Errorf("GET /stream: %s %q", resp.Status, body)
}

// read consumes one stream until it ends.
func (s *subscriber) read(p *sse.Reader, st *runState, connected func()) error {
	for {
		it, err := p.Next()
		if err != nil {
			return err
		}
		switch it.Kind {
		case sse.KindRetry:
			if !s.conned {
				s.conned = true
				storeMax(&st.lastConn, time.Now().UnixNano())
				connected()
			}
			continue
		case sse.KindComment:
			continue
		}
		now := time.Now().UnixNano()
		switch typ := string(it.Type); typ {
		case "message":
			if s.online == nil { // observers count no messages
				s.onMessage(it, st, now)
			}
		case "presence", "join", "leave":
			if typ == "presence" && s.liveAt.Load() == 0 && isRoom(it.Data, st.roomName(s.room)) {
				s.liveAt.Store(now)
			}
			if s.online != nil {
				s.online.apply(typ, it.Data, now)
			}
		case "disconnect":
			s.discon++
		case "notice":
			s.notices++
		case "status":
			s.statuses++
		}
	}
}

// isRoom reports whether the JSON object data has "room" equal to room.
func isRoom(data []byte, room string) bool {
	v, ok := jsonMember(data, "room")
	return ok && len(v) >= 2 && v[0] == '"' && string(v[1:len(v)-1]) == room
}

// storeMax raises a to v unless it is already higher.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// onMessage records a message event: its latency, duplicates, its room,
// and the order of its stream ID (its room's entry of the position).
func (s *subscriber) onMessage(it sse.Item, st *runState, now int64) {
	text, ok := extractText(it.Data)
	if !ok {
		s.foreign++
		return
	}
	seq, sent, tag, ok := parseBenchText(text)
	if !ok || seq >= uint64(st.msgs) || string(tag) != string(st.tag) {
		s.foreign++
		return
	}
	room := st.roomName(s.room)
	if st.rooms != nil && (st.roomOf(int(seq)) != s.room || !isRoom(it.Data, room)) {
		s.wrongRoom++
		return
	}
	// A server whose IDs are not stream IDs gets no ID checks.
	entry, _ := roomEntry(it.ID, room)
	if id, err := chat.ParseID(string(entry)); err == nil {
		if !id.After(s.lastID) {
			s.idOrder++
		}
		s.lastID = id
		slot := &st.ids[seq]
		first := slot.Load()
		if first == nil {
			mine := new(chat.ID) // once per message, by its first receiver
			*mine = id
			if slot.CompareAndSwap(nil, mine) {
				first = mine
			} else {
				first = slot.Load()
			}
		}
		if *first != id {
			st.idErrs.Add(1)
		}
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[w]&bit != 0 {
		s.dups++
		return
	}
	s.seen[w] |= bit
	lat := max(now-sent, 0) / 1000
	s.seqs = append(s.seqs, uint32(seq))
	s.lats = append(s.lats, uint32(min(lat, 1<<32-1)))
	st.unique.Add(1)
	storeMax(&st.lastRecv, now)
}

// postRecord is what one POST did.
type postRecord struct {
	start, end int64 // unix ns
	status     string
}

// fleet runs the subscribers of one run: it owns their goroutines and the
// context that ends them.
type fleet struct {
	b      *bench
	st     *runState
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stalledWG tracks the stalled subscribers, which end once drain is
	// closed (each drain is bounded by stalledDrain).
	stalledWG sync.WaitGroup
	drain     chan struct{}
}

func newFleet(ctx context.Context, b *bench, st *runState) *fleet {
	f := &fleet{b: b, st: st, drain: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(ctx)
	return f
}

// start runs sub in a goroutine. With sem, a slot of it is taken now and
// given back when sub has connected (or ended): so at most cap(sem)
// subscribers connect at once.
func (f *fleet) start(ctx context.Context, sub *subscriber, sem chan struct{}) error {
	if sem != nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.wg.Add(1)
	if sub.stalled {
		f.stalledWG.Add(1)
	}
	go func() {
		defer f.wg.Done()
		var once sync.Once
		release := func() {
			if sem != nil {
				once.Do(func() { <-sem })
			}
		}
		defer release()
		connected := func() {
			f.st.conns.Add(1)
			release()
		}
		if sub.stalled {
			defer f.stalledWG.Done()
			sub.runStalled(f.ctx, f.st, connected, f.drain)
			return
		}
		sub.run(f.ctx, f.b, f.st, connected)
	}()
	return nil
}

// startAll starts subs, at most -connect-concurrency connecting at once.
func (f *fleet) startAll(ctx context.Context, subs []*subscriber) error {
	sem := make(chan struct{}, f.b.cfg.connectConc)
	for _, sub := range subs {
		if err := f.start(ctx, sub, sem); err != nil {
			return err
		}
	}
	return nil
}

// waitConns waits until want subscribers have connected or deadline has
// passed, and returns how many have.
func (f *fleet) waitConns(ctx context.Context, want int64, deadline time.Time) (int64, error) {
	for n := 0; f.st.conns.Load() < want && time.Now().Before(deadline) && n < maxWaitPolls; n++ {
		select {
		case <-ctx.Done():
			return f.st.conns.Load(), ctx.Err()
		case <-time.After(connPoll):
		}
	}
	return f.st.conns.Load(), nil
}

// connectError says why fewer than want subscribers connected.
func (f *fleet) connectError(n, want int64) error {
	f.st.errMu.Lock()
	first := f.st.firstErr
	f.st.errMu.Unlock()
	if first == nil {
		first = errors.New("no error seen: streams open but no retry: line")
	}
	return fmt.Errorf("only %d of %d subscribers connected after %v; first error: %v",
		n, want, f.b.cfg.connectTimeout, first)
}

// stop ends every subscriber and waits for them, at most stopGrace.
func (f *fleet) stop() {
	f.cancel()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		f.b.logf("warning: subscribers still running %v after cancel", stopGrace)
	}
}

// newSubscribers makes the run's n subscribers: subscriber j logged in as
// users[j mod len(users)], in room j mod R, stalled as scenario s says.
func newSubscribers(s scenario, st *runState, users []session) []*subscriber {
	words := (st.msgs + 63) / 64
	perRoom := (st.msgs + st.nRooms() - 1) / st.nRooms() // messages each room gets, at most
	subs := make([]*subscriber, s.Subs)
	for j := range subs {
		sub := &subscriber{sess: users[j%len(users)], room: st.roomOf(j)}
		// s.Stalled of the subscribers, spread evenly over them (and so
		// over the instances and users).
		if sub.stalled = (j+1)*s.Stalled/s.Subs != j*s.Stalled/s.Subs; !sub.stalled {
			sub.seen, sub.seqs, sub.lats = make([]uint64, words), make([]uint32, 0, perRoom), make([]uint32, 0, perRoom)
		}
		subs[j] = sub
	}
	return subs
}

// runScenario runs one scenario once against fresh processes.
func (b *bench) runScenario(ctx context.Context, s scenario, runNo int) (res *result, err error) {
	cfg := b.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.deadline)
	defer cancel()

	e, err := b.startEnv(ctx, s, runNo)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && len(e.servers) > 0 {
			err = fmt.Errorf("%w\n%s", err, e.tails())
		}
		e.stop()
	}()
	M := cfg.msgs(s)
	if s.Rate > 0 && M == 0 {
		M = 1
	}
	tagb := make([]byte, 4)
	_, _ = rand.Read(tagb)
	tag := hex.EncodeToString(tagb)
	st := &runState{tag: []byte(tag), msgs: M, ids: make([]atomic.Pointer[chat.ID], M), storm: s.Storm}
	if s.Rooms > 0 {
		st.rooms = roomNames(tag, s.Rooms)
	}
	res = &result{Scenario: s.Name, Run: runNo, Instances: len(e.targets), Subs: s.Subs, Rooms: s.Rooms, Rate: s.Rate,
		SendSec: cfg.duration.Seconds(), Msgs: M, PostErrors: map[string]int{}}
	if M == 0 {
		res.SendSec = 0
	}

	who, err := b.prepare(ctx, s, st, e.targets)
	if err != nil {
		return nil, err
	}
	res.Senders = len(who.senders)
	res.RSSBeforeKiB = sumRSS(e.serverPIDs)

	subs := newSubscribers(s, st, who.subUsers)
	f := newFleet(ctx, b, st)
	defer f.stop()
	var observers []*subscriber
	if s.Storm {
		if observers, err = b.startObservers(ctx, f, st, who.observers, subs); err != nil {
			return nil, err
		}
	} else {
		connStart := time.Now()
		if err := f.startAll(ctx, subs); err != nil {
			return nil, err
		}
		n, err := f.waitConns(ctx, int64(s.Subs), time.Now().Add(cfg.connectTimeout))
		if err != nil {
			return nil, err
		}
		if n < int64(s.Subs) {
			f.stop()
			return nil, f.connectError(n, int64(s.Subs))
		}
		res.ConnectSec = time.Since(connStart).Seconds()
		b.logf("%d subscribers connected in %.2fs", s.Subs, res.ConnectSec)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.settle):
		}
		res.RSSConnectedKiB = sumRSS(e.serverPIDs)
		if s.Subs > 0 {
			res.RSSPerSubKiB = float64(res.RSSConnectedKiB-res.RSSBeforeKiB) / float64(s.Subs)
		}
	}

	// Send M messages at the scheduled times, without waiting for replies
	// (in a storm while the subscribers connect).
	cpu0 := sumCPU(e.serverPIDs)
	redis0 := sumCPU([]int{e.redisPID})
	gen0 := selfCPU()
	busy0 := busyCPU()
	window0 := time.Now()
	posts := make([]postRecord, M)
	firstSend := time.Now().Add(scheduleLead)
	var lag time.Duration
	if s.Storm {
		lag, err = b.storm(ctx, s, f, st, subs, observers, who.senders, posts, firstSend, e, res)
	} else if M > 0 {
		b.logf("posting %d messages at %g/s from %d senders", M, s.Rate, len(who.senders))
		lag, err = b.send(ctx, s, st, who.senders, posts, firstSend)
	}
	res.MaxSendLagMs = lag.Seconds() * 1000
	if err != nil {
		return nil, err
	}
	if lag > lagWarn {
		res.Notes = append(res.Notes, fmt.Sprintf("generator fell %v behind schedule", lag.Round(time.Millisecond)))
	}
	if M > 0 {
		if err := b.drainDeliveries(ctx, st, subs, posts, res); err != nil {
			return nil, err
		}
	}
	res.ServerCPUSec = sumCPU(e.serverPIDs) - cpu0
	res.RedisCPUSec = sumCPU([]int{e.redisPID}) - redis0
	res.GenCPUSec = selfCPU() - gen0
	res.WindowSec = time.Since(window0).Seconds()
	if M > 0 {
		res.OtherCPUSec = max(busyCPU()-busy0-res.ServerCPUSec-res.RedisCPUSec-res.GenCPUSec, 0)
		if cores := res.OtherCPUSec / res.WindowSec; cores > otherWarn {
			res.Notes = append(res.Notes, fmt.Sprintf("other processes used %.2f CPUs during the measurement: figures disturbed", cores))
		}
	}
	res.RSSEndKiB = sumRSS(e.serverPIDs)
	res.RedisRSSEndKiB = sumRSS([]int{e.redisPID})
	if s.Stalled > 0 { // after the measurements: draining costs CPU
		b.logf("draining %d stalled subscribers", s.Stalled)
		close(f.drain)
		f.stalledWG.Wait() // each drain is bounded by stalledDrain
	}
	f.stop()

	analyze(res, subs, posts, st)
	if s.Storm {
		finishStorm(res.Storm, subs, observers)
	}
	if M > 0 && res.Deliveries > 0 {
		if last := st.lastRecv.Load(); last > firstSend.UnixNano() {
			res.DelivS = float64(res.Deliveries) / (float64(last-firstSend.UnixNano()) / 1e9)
		}
		d := float64(res.Deliveries)
		res.ServerUsPerD = res.ServerCPUSec * 1e6 / d
		res.RedisUsPerD = res.RedisCPUSec * 1e6 / d
		res.GenUsPerD = res.GenCPUSec * 1e6 / d
	}
	for _, n := range res.Notes {
		b.logf("%s run %d: %s", s.Name, runNo, n)
	}
	return res, nil
}

// expectedDeliveries counts the (subscriber, message) pairs the healthy
// subscribers must receive: accepted messages, plus with maybe those whose
// POST got no answer (the server may have taken them).
func expectedDeliveries(st *runState, subs []*subscriber, posts []postRecord, maybe bool) int64 {
	byRoom := postsByRoom(st, posts, maybe)
	var n int64
	for _, s := range subs {
		if s.stalled {
			continue
		}
		for _, q := range byRoom[s.room] {
			if st.expects(s, q, posts[q]) {
				n++
			}
		}
	}
	return n
}

// postsByRoom lists the accepted messages of each room (with maybe also
// those without an answer), in sequence order.
func postsByRoom(st *runState, posts []postRecord, maybe bool) [][]int {
	out := make([][]int, st.nRooms())
	for i, p := range posts {
		answered := strings.HasPrefix(p.status, "4") || strings.HasPrefix(p.status, "5")
		if p.status == "204" || (maybe && !answered) {
			out[st.roomOf(i)] = append(out[st.roomOf(i)], i)
		}
	}
	return out
}

// drainDeliveries waits, at most -drain, until every subscriber has every
// message it must get; in a storm, where some messages posted while a
// stream was opening arrive too, until deliveries then stop for drainQuiet.
func (b *bench) drainDeliveries(ctx context.Context, st *runState, subs []*subscriber, posts []postRecord, res *result) error {
	want := expectedDeliveries(st, subs, posts, true)
	drainEnd := time.Now().Add(b.cfg.drain)
	quiet := func() bool {
		return !st.storm || time.Since(time.Unix(0, st.lastRecv.Load())) >= drainQuiet
	}
	for n := 0; (st.unique.Load() < want || !quiet()) && time.Now().Before(drainEnd) && n < maxWaitPolls; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
	if got, must := st.unique.Load(), expectedDeliveries(st, subs, posts, false); got < must {
		res.Notes = append(res.Notes, fmt.Sprintf("drain timeout: %d of %d deliveries", got, must))
	}
	return nil
}

// send posts len(posts) messages at rate from the senders (message i to
// room i mod R, from sender senderOf(i)), each at its scheduled time firstSend +
// i/rate, in its own goroutine (open loop). It returns the worst lateness
// of the sender.
func (b *bench) send(ctx context.Context, s scenario, st *runState, senders []session, posts []postRecord, firstSend time.Time) (time.Duration, error) {
	sem := make(chan struct{}, b.cfg.maxInflight)
	var wg sync.WaitGroup
	var maxLag time.Duration
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var err error
loop:
	for i := range posts {
		at := firstSend.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				err = ctx.Err()
				break loop
			case <-timer.C:
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
		maxLag = max(maxLag, time.Since(at))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			posts[i] = b.postOne(ctx, senders[st.senderOf(i, len(senders))], i, st)
		}(i)
	}
	wg.Wait() // each POST is bounded by -post-timeout
	return maxLag, err
}

// postOne posts message seq to its room.
func (b *bench) postOne(ctx context.Context, sess session, seq int, st *runState) postRecord {
	start := time.Now()
	text := appendBenchText(make([]byte, 0, 64), seq, start.UnixNano(), string(st.tag))
	form := "message=" + url.QueryEscape(string(text))
	path := roomPath(st.roomName(st.roomOf(seq)), "post")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sess.target+path, strings.NewReader(form))
	if err != nil {
		return postRecord{start: start.UnixNano(), status: "bad request"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sess.addCookies(req)
	resp, err := b.poster.Do(req)
	rec := postRecord{start: start.UnixNano()}
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			rec.status = "timeout"
		default:
			rec.status = "conn error"
		}
		return rec
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	rec.end = time.Now().UnixNano()
	rec.status = strconv.Itoa(resp.StatusCode)
	return rec
}

// analyze fills res from what the subscribers and senders recorded.
func analyze(res *result, subs []*subscriber, posts []postRecord, st *runState) {
	var postLats []uint32 // µs
	for _, p := range posts {
		if p.status == "204" {
			res.Accepted++
			postLats = append(postLats, uint32(min(max(p.end-p.start, 0)/1000, 1<<32-1)))
		} else {
			res.PostErrors[p.status]++
		}
	}
	slices.Sort(postLats)
	byRoom := postsByRoom(st, posts, false)
	var all []uint32
	for _, s := range subs {
		if !s.conned {
			res.FailedSubs++
		}
		if s.stalled {
			res.Stalled++
			if s.closed {
				res.StalledClosed++
			}
			if s.told != "" {
				if res.StalledReasons == nil {
					res.StalledReasons = map[string]int{}
				}
				res.StalledReasons[s.told]++
			}
			continue
		}
		for _, q := range byRoom[s.room] {
			if !st.expects(s, q, posts[q]) {
				continue
			}
			res.Expected++
			if s.seen[q/64]&(1<<(q%64)) == 0 {
				res.Loss++
			}
		}
		res.Deliveries += int64(len(s.seqs))
		res.Dups += s.dups
		res.Foreign += s.foreign
		res.WrongRoom += s.wrongRoom
		res.Reconnects += s.reconn
		res.Disconnects += s.discon
		res.Notices += s.notices
		res.Statuses += s.statuses
		rt, inv := orderCheck(s.seqs, posts)
		res.OrderErrs += s.idOrder + rt
		res.SeqInversions += inv
		all = append(all, s.lats...)
	}
	res.OrderErrs += st.idErrs.Load()
	slices.Sort(all)
	ms := func(us uint32) float64 { return float64(us) / 1000 }
	res.P50Ms = ms(percentile(all, 50))
	res.P90Ms = ms(percentile(all, 90))
	res.P99Ms = ms(percentile(all, 99))
	res.PostP50Ms = ms(percentile(postLats, 50))
	res.PostP99Ms = ms(percentile(postLats, 99))
	if len(all) > 0 {
		res.MaxMs = ms(all[len(all)-1])
	}
}

// orderCheck checks one subscriber's receive order against real time: a
// message b must not arrive after a message a whose POST started after b's
// POST was answered (the server had accepted b before a existed). It also
// counts sequence inversions (legal when POSTs overlap).
func orderCheck(seqs []uint32, posts []postRecord) (realtime, inversions int64) {
	var maxStart int64
	maxSeq := int64(-1)
	for _, q := range seqs {
		p := posts[q]
		if p.end != 0 && p.end < maxStart {
			realtime++
		}
		maxStart = max(maxStart, p.start)
		if int64(q) < maxSeq {
			inversions++
		}
		maxSeq = max(maxSeq, int64(q))
	}
	return realtime, inversions
}

func sumCPU(pids []int) float64 {
	var t float64
	for _, pid := range pids {
		if pid > 0 {
			if c, err := procCPU(pid); err == nil {
				t += c
			}
		}
	}
	return t
}

func sumRSS(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		if pid > 0 {
			if r, err := procRSS(pid); err == nil {
				t += r
			}
		}
	}
	return t
}
