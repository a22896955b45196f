package fanout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/chat"
)

// never is how long a test waits for something that must happen "at
// once" before it decides that it never will. It is no performance bound.
const never = 10 * time.Second

const slogInfo = slog.LevelInfo

// testConfig is a hub configuration with events the tests can recognise
// and bounds no test reaches unless it means to.
func testConfig() Config {
	return Config{
		QueueEvents:  1 << 20,
		QueueBytes:   1 << 30,
		Heartbeat:    time.Hour,
		WriteTimeout: time.Minute,
		Writers:      2,
		Disconnect: func(r Reason) *Event {
			return &Event{Wire: []byte("event: disconnect\ndata: " + r.String() + "\n\n")}
		},
		Status: func(degraded bool) *Event {
			state := "ok"
			if degraded {
				state = "degraded"
			}
			return &Event{Wire: []byte("event: status\ndata: " + state + "\n\n")}
		},
	}
}

// logRecorder keeps the hub's log records.
type logRecorder struct {
	mu      sync.Mutex // guards records
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many records have message msg and, for every key in
// attrs, that attribute's value.
func (l *logRecorder) count(level slog.Level, msg string, attrs map[string]string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level != level || r.Message != msg {
			continue
		}
		match := 0
		r.Attrs(func(a slog.Attr) bool {
			if v, ok := attrs[a.Key]; ok && a.Value.String() == v {
				match++
			}
			return true
		})
		if match == len(attrs) {
			n++
		}
	}
	return n
}

// startHub starts a hub that is shut down when the test ends.
func startHub(t testing.TB, cfg Config) (*Hub, *logRecorder) {
	t.Helper()
	logs := &logRecorder{}
	h := New(cfg, slog.New(logs))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), never)
		defer cancel()
		h.Shutdown(ctx)
	})
	return h, logs
}

// eventually polls cond until it holds, failing t after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		<-tick.C
	}
}

// message is a message event of the default room of exactly size bytes
// with ID n-0.
func message(n int, size int) *Event { return roomMessage(chat.DefaultRoom, n, size) }

// roomMessage is a message event of room of exactly size bytes (unless
// that is too small for its head) with ID n-0. Its data is its room's
// entry, so a client can tell which message it is whatever the stream's
// id, then padding.
func roomMessage(room string, n int, size int) *Event {
	id := chat.ID{Ms: uint64(n)}
	entry := string(AppendEntry(nil, room, id))
	line := "id: " + entry + "\n"
	head := line + "event: message\ndata: " + entry + " "
	pad := max(size-len(head)-2, 1)
	return &Event{ID: id, Room: room, IDLen: len(line), Wire: []byte(head + strings.Repeat("x", pad) + "\n\n")}
}

// notice is an event without an ID.
func notice(text string) *Event {
	return &Event{Wire: []byte("event: notice\ndata: " + text + "\n\n")}
}

// sseEvent is one event as a client parsed it.
type sseEvent struct {
	ID, Type, Data, Comment string
	Size                    int // bytes on the wire
}

// parseSSE splits b into complete events; rest is an unfinished one. It is
// strict, so that a corrupted stream cannot pass for a good one: an event
// with a repeated or unknown field, or a message whose data is not what
// roomMessage makes, has Type "malformed".
func parseSSE(b []byte) (evs []sseEvent, rest []byte) {
	for {
		i := bytes.Index(b, []byte("\n\n"))
		if i < 0 {
			return evs, b
		}
		var ev sseEvent
		ev.Size = i + 2
		seen := map[string]bool{}
		malformed := false
		for _, line := range strings.Split(string(b[:i]), "\n") {
			field, value, ok := strings.Cut(line, ": ")
			malformed = malformed || !ok || seen[field]
			seen[field] = true
			switch field {
			case "":
				ev.Comment = value
			case "id":
				ev.ID = value
			case "event":
				ev.Type = value
			case "data":
				ev.Data = value
			default:
				malformed = true
			}
		}
		if _, pad, ok := strings.Cut(ev.Data, " "); ev.Type == "message" && (!ok || strings.Trim(pad, "x") != "") {
			malformed = true
		}
		if malformed {
			ev.Type = "malformed"
		}
		evs = append(evs, ev)
		b = b[i+2:]
	}
}

// describe is what a client received, as a compact list for comparisons:
// "7-0" for a message, "notice:x", "status:x", "disconnect:x", "ping".
func describe(evs []sseEvent) []string {
	var out []string
	for _, ev := range evs {
		switch {
		case ev.Comment != "" && ev.Type != "malformed":
			out = append(out, ev.Comment)
		case ev.Type == "message":
			out = append(out, ev.ID)
		default:
			out = append(out, ev.Type+":"+ev.Data)
		}
	}
	return out
}

// ids is the list describe gives for message IDs from..to.
func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, chat.ID{Ms: uint64(i)}.String())
	}
	return out
}

// client is the far end of one stream: a raw TCP connection, read by the
// test as it chooses.
type client struct {
	t       testing.TB
	conn    *net.TCPConn
	body    io.Reader     // conn, or the decoded body of an HTTP response on it
	release *releaseCheck // of its stream

	mu     sync.Mutex // guards got, err
	got    []byte
	err    error         // the read error that ended reading; io.EOF when the server closed
	notify chan struct{} // signalled after every read; buffered 1
}

func newClient(t testing.TB, conn *net.TCPConn, body io.Reader) *client {
	c := &client{t: t, conn: conn, body: body, notify: make(chan struct{}, 1)}
	t.Cleanup(func() { conn.Close() })
	return c
}

// read reads into buf once and records what it got.
func (c *client) read(buf []byte) (int, error) {
	n, err := c.body.Read(buf)
	c.mu.Lock()
	c.got = append(c.got, buf[:n]...)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return n, err
}

// start reads everything the server sends, as fast as it comes, until the
// connection ends.
func (c *client) start() *client {
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.read(buf); err != nil {
				return
			}
		}
	}()
	return c
}

// trickle reads at rate bytes per second until the connection ends: a slow
// but steady reader. It keeps to the rate on average, catching up after
// the scheduler kept it waiting, the way a slow link would.
func (c *client) trickle(rate int) *client {
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		buf := make([]byte, 64<<10)
		start, total := time.Now(), 0
		for range tick.C {
			allowed := int(time.Since(start).Seconds()*float64(rate)) - total
			if allowed <= 0 {
				continue
			}
			n, err := c.read(buf[:min(allowed, len(buf))])
			if err != nil {
				return
			}
			total += n
		}
	}()
	return c
}

// received returns the complete events so far and whether the stream has
// ended.
func (c *client) received() ([]sseEvent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	evs, _ := parseSSE(c.got)
	return evs, c.err != nil
}

// raw returns the bytes received so far.
func (c *client) raw() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.got)
}

// await waits until cond holds for what the client received, failing t
// after never.
func (c *client) await(what string, cond func(evs []sseEvent, ended bool) bool) []sseEvent {
	c.t.Helper()
	return c.awaitWithin(never, what, cond)
}

// awaitWithin is await with another bound, for bulk transfers on a busy
// machine.
func (c *client) awaitWithin(bound time.Duration, what string, cond func(evs []sseEvent, ended bool) bool) []sseEvent {
	c.t.Helper()
	timeout := time.NewTimer(bound)
	defer timeout.Stop()
	for {
		evs, ended := c.received()
		if cond(evs, ended) {
			return evs
		}
		select {
		case <-c.notify:
		case <-timeout.C:
			c.t.Fatalf("timed out after %v waiting for the client to see %s; it has %d events, the last %q",
				bound, what, len(evs), last(describe(evs)))
		}
	}
}

// awaitEnd reads, if the client was not reading, and waits until the
// server closed the stream; it returns everything received.
func (c *client) awaitEnd(reading bool) []sseEvent {
	c.t.Helper()
	if !reading {
		c.start()
	}
	evs := c.await("the end of the stream", func(_ []sseEvent, ended bool) bool { return ended })
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		c.t.Fatalf("stream ended with %v, not closed by the server", err)
	}
	return evs
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// socketOpts are the socket buffer sizes of a test connection; 0 keeps the
// system's.
type socketOpts struct {
	clientRcvbuf int // set before connecting, so the window is small from the start
	serverSndbuf int
}

// smallBuffers are socket buffers small enough that a client which does
// not read blocks the server after some KiB.
func smallBuffers() socketOpts { return socketOpts{clientRcvbuf: 4096, serverSndbuf: 4096} }

// dial connects to addr with opts' client side.
func dial(t testing.TB, addr string, opts socketOpts) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if opts.clientRcvbuf == 0 {
			return nil
		}
		return setBuf(rc, soRcvbuf, opts.clientRcvbuf)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

// sndbufListener sets SO_SNDBUF on the connections it accepts.
type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.size > 0 {
		rc, _ := c.(*net.TCPConn).SyscallConn()
		err = setBuf(rc, soSndbuf, l.size)
	}
	return c, err
}

// releaseCheck is the release of a stream opened by the tests' helpers. It
// counts its calls and checks, at each, that the stream has left the
// registry and that neither the hub's lock nor the subscriber's is held.
// When the test ends, after its hub has shut down, the count must be 1.
type releaseCheck struct {
	t     testing.TB
	h     *Hub
	sub   atomic.Pointer[Subscriber] // set once Subscribe returned
	calls atomic.Int32
	done  chan struct{} // closed at the first call
}

// newReleaseCheck returns the release check of a stream of h that is about
// to subscribe; the caller sets sub.
func newReleaseCheck(t testing.TB, h *Hub) *releaseCheck {
	rc := &releaseCheck{t: t, h: h, done: make(chan struct{})}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), never)
		defer cancel()
		h.Shutdown(ctx) // every stream ended (again: waits for the first)
		if n := rc.calls.Load(); n != 1 && rc.sub.Load() != nil {
			t.Errorf("release of a stream called %d times, want once", n)
		}
	})
	return rc
}

func (rc *releaseCheck) release() {
	n := rc.calls.Add(1)
	s := rc.sub.Load()
	if s == nil {
		rc.t.Error("release called before Subscribe returned")
		return
	}
	// From another goroutine, so that a lock the caller holds shows as a
	// wait instead of a deadlock.
	checked := make(chan string, 1)
	go func() {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		rc.h.mu.RLock()
		defer rc.h.mu.RUnlock()
		checked <- registered(rc.h, s, closed)
	}()
	select {
	case problem := <-checked:
		if problem != "" {
			rc.t.Errorf("release called while %s", problem)
		}
	case <-time.After(never):
		rc.t.Error("release called with the hub's or the subscriber's lock held")
	}
	if n == 1 {
		close(rc.done)
	}
}

// registered says where s still is in h's registry, or "" if nowhere. The
// caller holds h.mu.
func registered(h *Hub, s *Subscriber, closed bool) string {
	var where []string
	if !closed {
		where = append(where, "the stream is open")
	}
	if !s.removed {
		where = append(where, "it is not marked removed")
	}
	if slices.Contains(h.reg.all, s) {
		where = append(where, "it is in the list of all streams")
	}
	if slices.Contains(h.reg.sessions[s.session], s) {
		where = append(where, "it is in its session's list")
	}
	for room, subs := range h.reg.rooms {
		if slices.Contains(subs, s) {
			where = append(where, "it is in the list of room "+room)
		}
	}
	return strings.Join(where, ", ")
}

// awaitRelease waits for the stream's release.
func (rc *releaseCheck) await() {
	rc.t.Helper()
	select {
	case <-rc.done:
	case <-time.After(never):
		rc.t.Fatal("the stream ended and was not released")
	}
}

// subscribe subscribes with a release check.
func subscribe(t testing.TB, h *Hub, rooms []string, session string, mode Mode) (*Subscriber, *releaseCheck, error) {
	rc := newReleaseCheck(t, h)
	s, err := h.Subscribe(rooms, session, mode, rc.release)
	if err == nil {
		rc.sub.Store(s)
	}
	return s, rc, err
}

// pooled subscribes to rooms for session in Pooled mode, attaches the server
// end of a fresh loopback connection and returns the client end (not yet
// reading). before runs between Subscribe and Attach, as a handler's
// replay would.
func pooled(t testing.TB, h *Hub, rooms []string, session string, opts socketOpts, before func(*Subscriber)) (*Subscriber, *client) {
	t.Helper()
	s, rc, err := subscribe(t, h, rooms, session, Pooled)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := dial(t, ln.Addr().String(), opts)
	srv, err := sndbufListener{ln, opts.serverSndbuf}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(s)
	}
	if err := s.Attach(srv); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c, c)
	cl.release = rc
	return s, cl
}

// streamServer serves Goroutine-mode streams over HTTP/1.1, the way the
// chat server's handler does: GET /?rooms=a,b&session= subscribes, sends
// the headers, runs the test's before hook (the replay's place) and serves.
type streamServer struct {
	hub  *Hub
	addr string
	subs chan opened // every subscriber, once subscribed

	mu     sync.Mutex        // guards before, t
	before func(*Subscriber) // may be nil
	t      testing.TB        // of the stream being opened: its release check's
}

func startStreamServer(t testing.TB, h *Hub, serverSndbuf int) *streamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := &streamServer{hub: h, addr: ln.Addr().String(), subs: make(chan opened, 100)}
	srv := &http.Server{Handler: http.HandlerFunc(ss.handle), ReadHeaderTimeout: never}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(sndbufListener{ln, serverSndbuf})
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ss
}

func (ss *streamServer) handle(w http.ResponseWriter, r *http.Request) {
	var rooms []string
	if list := r.URL.Query().Get("rooms"); list != "" {
		rooms = strings.Split(list, ",")
	}
	ss.mu.Lock()
	t := ss.t
	ss.mu.Unlock()
	s, rc, err := subscribe(t, ss.hub, rooms, r.URL.Query().Get("session"), Goroutine)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	ss.mu.Lock()
	before := ss.before
	ss.mu.Unlock()
	if before != nil {
		before(s)
	}
	ss.subs <- opened{s, rc} // after the hook: the test goes on once it is done
	s.Serve(r.Context(), ResponseStream(w))
}

// opened is a stream the handler subscribed.
type opened struct {
	s  *Subscriber
	rc *releaseCheck
}

// open starts a stream and returns its subscriber and client, not yet
// reading the body.
func (ss *streamServer) open(t testing.TB, rooms []string, session string, opts socketOpts) (*Subscriber, *client) {
	t.Helper()
	ss.mu.Lock()
	ss.t = t
	ss.mu.Unlock()
	c := dial(t, ss.addr, opts)
	q := url.Values{"rooms": {strings.Join(rooms, ",")}, "session": {session}}
	fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: test\r\n\r\n", q.Encode())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	select {
	case o := <-ss.subs:
		cl := newClient(t, c, resp.Body)
		cl.release = o.rc
		return o.s, cl
	case <-time.After(never):
		t.Fatal("the handler did not subscribe")
		return nil, nil
	}
}

// opener opens a stream in one mode; before runs between Subscribe and
// Attach or Serve, where the handler writes the replay. In Goroutine mode
// the server's socket buffers are those given to modes.
type opener func(rooms []string, session string, opts socketOpts, before func(*Subscriber)) (*Subscriber, *client)

// modes runs f for each mode, with a hub of cfg and a way to open a stream
// in that mode.
func modes(t *testing.T, cfg Config, server socketOpts, f func(t *testing.T, h *Hub, logs *logRecorder, open opener)) {
	for _, mode := range []Mode{Pooled, Goroutine} {
		t.Run(mode.String(), func(t *testing.T) {
			h, logs := startHub(t, cfg)
			var ss *streamServer
			if mode == Goroutine {
				ss = startStreamServer(t, h, server.serverSndbuf)
			}
			f(t, h, logs, func(rooms []string, session string, o socketOpts, before func(*Subscriber)) (*Subscriber, *client) {
				t.Helper()
				if mode == Pooled {
					return pooled(t, h, rooms, session, o, before)
				}
				ss.mu.Lock()
				ss.before = before
				ss.mu.Unlock()
				return ss.open(t, rooms, session, o)
			})
		})
	}
}
