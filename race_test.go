package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// Tests that hold one step of a stream's start open with a go-redis hook on
// the server's own client, so the race they guard is hit every time, not by
// luck: posts land exactly between two steps.

// gate is a go-redis hook that holds the first matching command once armed,
// before or after Redis runs it, until released.
type gate struct {
	match   func(redis.Cmder) bool
	after   bool  // hold after the command ran (its answer is known), not before
	fail    error // instead of holding, fail the command with this error
	inPipes bool  // match pipelines only (see isNewest)
	armed   atomic.Bool
	held    chan struct{} // receives when a command is being held
	release chan struct{} // closed to let it go
}

func newGate(after bool, match func(redis.Cmder) bool) *gate {
	return &gate{match: match, after: after, held: make(chan struct{}, 1), release: make(chan struct{})}
}

// newNewestGate holds the stream's read of its rooms' newest IDs.
func newNewestGate(after bool) *gate {
	g := newGate(after, isNewest)
	g.inPipes = true
	return g
}

// isNewest matches the stream's read of the newest stored ID of its rooms
// (a pipeline of XREVRANGE … COUNT 1), which it does right after
// subscribing. A single XREVRANGE (the broker's own read of a room new to
// the process) is not it: isNewest is only used as a pipeline match.
func isNewest(cmd redis.Cmder) bool {
	a := cmd.Args()
	return cmd.Name() == "xrevrange" && len(a) == 6 && fmt.Sprint(a[5]) == "1"
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook holds a pipeline whose first command matches (the
// stream reads the newest ID of all its rooms in one pipeline).
func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || !g.match(cmds[0]) || !g.armed.CompareAndSwap(true, false) {
			return next(ctx, cmds)
		}
		if g.fail != nil {
			for _, c := range cmds {
				c.SetErr(g.fail)
			}
			return g.fail
		}
		if !g.after {
			g.held <- struct{}{}
			<-g.release
		}
		err := next(ctx, cmds)
		if g.after {
			g.held <- struct{}{}
			<-g.release
		}
		return err
	}
}
func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if g.inPipes || !g.match(cmd) || !g.armed.CompareAndSwap(true, false) {
			return next(ctx, cmd)
		}
		if g.fail != nil {
			cmd.SetErr(g.fail)
			return g.fail
		}
		if !g.after {
			g.held <- struct{}{}
			<-g.release
		}
		err := next(ctx, cmd)
		if g.after {
			g.held <- struct{}{}
			<-g.release
		}
		return err
	}
}

// openStreamAsync opens a stream in the background (its headers may wait
// for a held step) and returns where it will arrive.
func openStreamAsync(c *chatClient, lastEventID, query string) <-chan *sseStream {
	ch := make(chan *sseStream, 1)
	go func() { ch <- c.openStream(lastEventID, query) }()
	return ch
}

func waitHeld(t testing.TB, g *gate) {
	t.Helper()
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream never reached the held step")
	}
}

// TestSubscribeBeforeHistory: messages posted after a stream read the
// newest stored ID (so they are not in its replay) reach it live, because
// it subscribed before that read. Read history first and subscribe after,
// and these messages fall in between and are lost.
func TestSubscribeBeforeHistory(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			g := newNewestGate(true)
			srv := startServerWith(t, rs.URL(), options{redisHooks: []redis.Hook{g}}, "-rate-posts", "0", "-stream-mode", mode)
			bob := login(t, srv.URL, "bob")
			alice := login(t, srv.URL, "alice")
			postAll(bob, numbered("rendered-"+mode, 3))
			last := pageLastID(t, alice)
			g.armed.Store(true)
			streamCh := openStreamAsync(alice, "", "last_event_id="+url.QueryEscape(last))
			waitHeld(t, g)
			between := numbered("between-"+mode, 10)
			postAll(bob, between)
			close(g.release)
			s := <-streamCh
			got := s.collectMessages(t, len(between), 10*time.Second)
			bob.post("live-" + mode)
			got = append(got, s.collectMessages(t, 1, 10*time.Second)...)
			checkDelivery(t, "stream", got, append(between, "live-"+mode), nil)
		})
	}
}

// TestReplaySkipsQueuedLive: messages posted after a stream subscribed but
// before it read the newest ID are both queued live and replayed; the
// queued copies are dropped, so each arrives once, in order. Messages
// posted while the replay is being written (held at its first page read)
// queue live and follow the replay, in order.
func TestReplaySkipsQueuedLive(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			beforeNewest := newNewestGate(false)
			duringReplay := newGate(false, func(cmd redis.Cmder) bool {
				a := cmd.Args() // the replay's page reads: XRANGE … COUNT 100
				return cmd.Name() == "xrange" && len(a) == 6 && fmt.Sprint(a[5]) == "100"
			})
			srv := startServerWith(t, rs.URL(), options{redisHooks: []redis.Hook{beforeNewest, duringReplay}}, "-rate-posts", "0", "-stream-mode", mode)
			bob := login(t, srv.URL, "bob")
			alice := login(t, srv.URL, "alice")
			bob.post("start-" + mode)
			from := pageLastID(t, alice)
			old := numbered("old-"+mode, 150) // more than one replay page
			postAll(bob, old)
			beforeNewest.armed.Store(true)
			duringReplay.armed.Store(true)
			streamCh := openStreamAsync(alice, from, "")
			waitHeld(t, beforeNewest)
			delivered := serverCounters(t, srv).BrokerDelivered
			queued := numbered("queued-"+mode, 10)
			postAll(bob, queued)
			// Every one is in the stream's queue before the replay starts.
			waitFor(t, 10*time.Second, "live delivery to the hub", func() bool {
				return serverCounters(t, srv).BrokerDelivered >= delivered+int64(len(queued))
			})
			close(beforeNewest.release)
			waitHeld(t, duringReplay)
			during := numbered("during-"+mode, 10)
			postAll(bob, during)
			close(duringReplay.release)
			s := <-streamCh
			want := append(append(append([]string{}, old...), queued...), during...)
			got := s.collectMessages(t, len(want), 10*time.Second)
			bob.post("live-" + mode)
			got = append(got, s.collectMessages(t, 1, 10*time.Second)...)
			checkDelivery(t, "stream", got, append(want, "live-"+mode), nil)
		})
	}
}

// TestPageLoadRaceConcurrent: many pages are rendered and their streams
// opened while messages are posted without pause. Every stream must get
// exactly the messages stored after the position its page was rendered
// at, in order: none lost between render and subscribe, none twice.
func TestPageLoadRaceConcurrent(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	const viewers = 8
	clients := make([]*chatClient, viewers)
	for i := range clients {
		clients[i] = login(t, srv.URL, fmt.Sprintf("viewer%d", i))
	}
	stop := make(chan struct{})
	posted := make(chan []string, 1)
	go func() {
		var texts []string
		for i := 0; ; i++ {
			select {
			case <-stop:
				posted <- texts
				return
			default:
			}
			text := fmt.Sprintf("race-%04d", i)
			bob.post(text)
			texts = append(texts, text)
		}
	}()
	type view struct {
		pos    string
		stream *sseStream
	}
	views := make([]view, viewers)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pos := pageLastID(t, c)
			views[i] = view{pos, c.openStream("", "last_event_id="+url.QueryEscape(pos))}
		}()
	}
	wg.Wait()
	bob.post("race-more") // at least one message after every stream opened
	close(stop)
	texts := <-posted
	bob.post("race-end")

	// What each stream must get: everything stored after its page's position.
	xs, err := rs.Client().XRange(context.Background(), chatHistoryKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages posted while %d pages loaded", len(texts), viewers)
	for i, v := range views {
		pos, err := chat.ParsePosition(v.pos)
		if err != nil {
			t.Fatalf("viewer %d: page position %q: %v", i, v.pos, err)
		}
		var want []string
		for _, x := range xs {
			id, _ := chat.ParseID(x.ID)
			if id.After(pos) {
				m, err := decodeStored(t, x)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, m.Text)
			}
		}
		got := v.stream.collectMessages(t, len(want), 10*time.Second)
		checkDelivery(t, fmt.Sprintf("viewer %d", i), got, want, nil)
		if len(want) == 0 || want[len(want)-1] != "race-end" || !strings.HasPrefix(want[0], "race-") {
			t.Fatalf("viewer %d: expected messages %q…", i, want[:min(3, len(want))])
		}
	}
}

// TestPageAlwaysHasPosition (defect 8): the page carries the position its
// stream starts from even when it renders no messages (-page-history 0) or
// cannot read history at all (Redis failing during the render), so a
// message posted between render and subscribe still reaches the page.
func TestPageAlwaysHasPosition(t *testing.T) {
	for _, tc := range []struct {
		name      string
		extra     []string
		failPage  bool
		wantExact bool // the position is the newest stored ID
	}{
		{"page-history-0", []string{"-page-history", "0"}, false, true},
		{"history-read-fails", nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.Start(t)
			g := newGate(false, func(cmd redis.Cmder) bool {
				return cmd.Name() == "xrevrange" && !isNewest(cmd)
			})
			g.fail = errors.New("injected: i/o timeout")
			srv := startServerWith(t, rs.URL(), options{redisHooks: []redis.Hook{g}}, append([]string{"-rate-posts", "0"}, tc.extra...)...)
			bob := login(t, srv.URL, "bob")
			alice := login(t, srv.URL, "alice")
			bob.post("before-" + tc.name)
			g.armed.Store(tc.failPage)
			resp := alice.get("/")
			pos := lastIDAttr.FindStringSubmatch(resp.body)
			if resp.StatusCode != 200 || pos == nil || pos[1] == "" {
				t.Fatalf("page: status %d, position %q", resp.StatusCode, pos)
			}
			if tc.failPage && (g.armed.Load() || !strings.Contains(resp.body, "chat store unavailable")) {
				t.Fatalf("the history read did not fail during the render")
			}
			if newest := midID(t, rs, "before-"+tc.name); tc.wantExact && pos[1] != newest {
				t.Fatalf("page position %q, want the newest ID %q", pos[1], newest)
			}
			bob.post("between-" + tc.name)
			s := alice.openStream("", "last_event_id="+url.QueryEscape(pos[1]))
			bob.post("live-" + tc.name)
			want := []string{"between-" + tc.name, "live-" + tc.name}
			if !tc.wantExact {
				// A clock position replays whatever was stored since
				// shortly before the render: at least "before", here.
				want = append([]string{"before-" + tc.name}, want...)
			}
			got := s.collectMessages(t, len(want), 10*time.Second)
			checkDelivery(t, "page stream", got, want, nil)
		})
	}
}

// TestStreamHeaders (defect 9): a stream's response carries the headers
// every response gets (CSP, nosniff, frame options) in both serving modes,
// also when the pooled mode writes the response head itself.
func TestStreamHeaders(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-stream-mode", mode)
			alice := login(t, srv.URL, "alice")
			s := alice.openStream("", "")
			h := s.resp.Header
			for name, want := range map[string]string{
				"Content-Type":            "text/event-stream",
				"Cache-Control":           "no-cache",
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "same-origin",
				"Content-Security-Policy": "default-src 'self'",
			} {
				if got := h.Get(name); !strings.HasPrefix(got, want) {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
		})
	}
}
