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
			"-rate-posts", "0", "-rate-logins", "0", "-max-streams", "20000", "-streams-per-session", "0"}, cfg.serverArgs...)
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
	cookies []*http.Cookie
}

// loginAll logs in users[i] on targets[i] with bounded concurrency.
func (b *bench) loginAll(ctx context.Context, users, targets []string) ([]session, error) {
	out := make([]session, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, b.cfg.loginConc)
	var wg sync.WaitGroup
	for i := range users {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = b.loginOne(ctx, users[i], targets[i])
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
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
	return session{target: target, cookies: cookies}, nil
}

// runState is shared by the subscribers and senders of one run.
type runState struct {
	tag      []byte // run tag in every message text: ignore other runs' messages
	msgs     int
	ids      []atomic.Pointer[chat.ID] // stream ID seen first for each message
	unique   atomic.Int64              // unique deliveries of this run's messages
	idErrs   atomic.Int64              // a message seen with two different IDs
	lastRecv atomic.Int64              // unix ns of the latest delivery
	conns    atomic.Int64              // subscribers connected (retry: read)

	errMu    sync.Mutex // guards firstErr
	firstErr error      // first error of a subscriber that never connected
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
// goroutine and read after that goroutine ended.
type subscriber struct {
	sess     session
	seen     []uint64 // bitset over message sequence numbers
	seqs     []uint32 // sequence numbers in receive order
	lats     []uint32 // latency in µs, same order
	dups     int64
	idOrder  int64 // stream ID not above the previous one
	foreign  int64
	reconn   int64
	discon   int64
	notices  int64
	statuses int64
	lastID   chat.ID
	conned   bool
	err      error

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
	for _, c := range sess.cookies {
		req.AddCookie(c)
	}
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
				connected()
			}
			continue
		case sse.KindComment:
			continue
		}
		now := time.Now().UnixNano()
		switch string(it.Type) {
		case "message":
			s.onMessage(it, st, now)
		case "disconnect":
			s.discon++
		case "notice":
			s.notices++
		case "status":
			s.statuses++
		}
	}
}

// onMessage records a message event: its latency, duplicates, and the
// order of its stream ID.
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
	// A server whose IDs are not stream IDs gets no ID checks.
	if id, err := chat.ParseID(string(it.ID)); err == nil {
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
	for {
		old := st.lastRecv.Load()
		if now <= old || st.lastRecv.CompareAndSwap(old, now) {
			break
		}
	}
}

// postRecord is what one POST did.
type postRecord struct {
	start, end int64 // unix ns
	status     string
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
	k := len(e.targets)
	M := cfg.msgs(s)
	if s.Rate > 0 && M == 0 {
		M = 1
	}
	tagb := make([]byte, 4)
	_, _ = rand.Read(tagb)
	tag := hex.EncodeToString(tagb)
	st := &runState{tag: []byte(tag), msgs: M, ids: make([]atomic.Pointer[chat.ID], M)}
	res = &result{Scenario: s.Name, Run: runNo, Instances: k, Subs: s.Subs, Rate: s.Rate,
		SendSec: cfg.duration.Seconds(), Msgs: M, PostErrors: map[string]int{}}
	if M == 0 {
		res.SendSec = 0
	}

	// Log in senders and subscriber users, each on the instance it uses.
	nSend := min(cfg.senders, max(M, 1))
	res.Senders = nSend
	nUsers := min(cfg.subUsers, s.Subs)
	nUsers = (nUsers + k - 1) / k * k // a multiple of k: subscriber j on instance j mod k
	var users, targets []string
	for i := range nSend {
		users = append(users, "p"+tag+strconv.Itoa(i))
		targets = append(targets, e.targets[i%k])
	}
	for i := range nUsers {
		users = append(users, "s"+tag+strconv.Itoa(i))
		targets = append(targets, e.targets[i%k])
	}
	b.logf("logging in %d senders and %d subscriber users", nSend, nUsers)
	sessions, err := b.loginAll(ctx, users, targets)
	if err != nil {
		return nil, err
	}
	senders, subUsers := sessions[:nSend], sessions[nSend:]

	res.RSSBeforeKiB = sumRSS(e.serverPIDs)

	// Connect the subscribers.
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	subs := make([]*subscriber, s.Subs)
	var subWG sync.WaitGroup
	connSem := make(chan struct{}, cfg.connectConc)
	connStart := time.Now()
	words := (M + 63) / 64
	drainStalled := make(chan struct{}) // closed when the stalled subscribers are to be drained
	var stalledWG sync.WaitGroup
	for j := range subs {
		sub := &subscriber{sess: subUsers[j%nUsers]}
		// s.Stalled of the subscribers, spread evenly over them (and so
		// over the instances and users).
		if sub.stalled = (j+1)*s.Stalled/s.Subs != j*s.Stalled/s.Subs; !sub.stalled {
			sub.seen, sub.seqs, sub.lats = make([]uint64, words), make([]uint32, 0, M), make([]uint32, 0, M)
		}
		subs[j] = sub
		select {
		case connSem <- struct{}{}:
		case <-ctx.Done():
			subCancel()
			subWG.Wait()
			return nil, ctx.Err()
		}
		subWG.Add(1)
		if sub.stalled {
			stalledWG.Add(1)
		}
		go func() {
			defer subWG.Done()
			var once sync.Once
			release := func() { once.Do(func() { <-connSem }) }
			defer release()
			connected := func() {
				st.conns.Add(1)
				release()
			}
			if sub.stalled {
				defer stalledWG.Done()
				sub.runStalled(subCtx, st, connected, drainStalled)
				return
			}
			sub.run(subCtx, b, st, connected)
		}()
	}
	stopSubs := func() {
		subCancel()
		done := make(chan struct{})
		go func() { subWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopGrace):
			b.logf("warning: subscribers still running %v after cancel", stopGrace)
		}
	}
	defer stopSubs()
	connDeadline := time.Now().Add(cfg.connectTimeout)
	for st.conns.Load() < int64(s.Subs) {
		if time.Now().After(connDeadline) {
			n := st.conns.Load()
			stopSubs()
			st.errMu.Lock()
			first := st.firstErr
			st.errMu.Unlock()
			if first == nil {
				first = errors.New("no error seen: streams open but no retry: line")
			}
			return nil, fmt.Errorf("only %d of %d subscribers connected after %v; first error: %v",
				n, s.Subs, cfg.connectTimeout, first)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
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

	// Send M messages at the scheduled times, without waiting for replies.
	cpu0 := sumCPU(e.serverPIDs)
	redis0 := sumCPU([]int{e.redisPID})
	gen0 := selfCPU()
	busy0 := busyCPU()
	window0 := time.Now()
	posts := make([]postRecord, M)
	firstSend := time.Now().Add(scheduleLead)
	if M > 0 {
		b.logf("posting %d messages at %g/s from %d senders", M, s.Rate, nSend)
		lag, err := b.send(ctx, s, senders, tag, posts, firstSend)
		res.MaxSendLagMs = lag.Seconds() * 1000
		if err != nil {
			return nil, err
		}
		if lag > lagWarn {
			res.Notes = append(res.Notes, fmt.Sprintf("generator fell %v behind schedule", lag.Round(time.Millisecond)))
		}
		// Wait for deliveries: every subscriber should get every accepted
		// message (and maybe those whose POST failed without an answer).
		var accepted, maybe int64
		for _, p := range posts {
			switch {
			case p.status == "204":
				accepted++
			case !strings.HasPrefix(p.status, "4") && !strings.HasPrefix(p.status, "5"):
				maybe++
			}
		}
		healthy := int64(s.Subs - s.Stalled)
		want := healthy * (accepted + maybe)
		drainEnd := time.Now().Add(cfg.drain)
		for st.unique.Load() < want && time.Now().Before(drainEnd) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(drainPoll):
			}
		}
		if got := st.unique.Load(); got < healthy*accepted {
			res.Notes = append(res.Notes, fmt.Sprintf("drain timeout: %d of %d deliveries", got, healthy*accepted))
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
		close(drainStalled)
		stalledWG.Wait() // each drain is bounded by stalledDrain
	}
	stopSubs()

	analyze(res, subs, posts, st)
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

// send posts len(posts) messages at rate from the senders (message i from
// sender i mod S), each at its scheduled time firstSend + i/rate, in its
// own goroutine (open loop). It returns the worst lateness of the sender.
func (b *bench) send(ctx context.Context, s scenario, senders []session, tag string, posts []postRecord, firstSend time.Time) (time.Duration, error) {
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
			posts[i] = b.postOne(ctx, senders[i%len(senders)], i, tag)
		}(i)
	}
	wg.Wait() // each POST is bounded by -post-timeout
	return maxLag, err
}

func (b *bench) postOne(ctx context.Context, sess session, seq int, tag string) postRecord {
	start := time.Now()
	text := appendBenchText(make([]byte, 0, 64), seq, start.UnixNano(), tag)
	form := "message=" + url.QueryEscape(string(text))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sess.target+"/post", strings.NewReader(form))
	if err != nil {
		return postRecord{start: start.UnixNano(), status: "bad request"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range sess.cookies {
		req.AddCookie(c)
	}
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
	var acceptedSeqs []int
	for i, p := range posts {
		if p.status == "204" {
			res.Accepted++
			acceptedSeqs = append(acceptedSeqs, i)
		} else {
			res.PostErrors[p.status]++
		}
	}
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
		res.Expected += int64(res.Accepted)
		res.Deliveries += int64(len(s.seqs))
		res.Dups += s.dups
		res.Foreign += s.foreign
		res.Reconnects += s.reconn
		res.Disconnects += s.discon
		res.Notices += s.notices
		res.Statuses += s.statuses
		for _, q := range acceptedSeqs {
			if s.seen[q/64]&(1<<(q%64)) == 0 {
				res.Loss++
			}
		}
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
