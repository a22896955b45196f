package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// Tests of the broker alone: a real redis-server, the broker's subscription
// delivering to a recording sink (no hub, no HTTP). Faults are injected at
// the exact Redis command with a go-redis hook on the broker's client.

const room = chat.DefaultRoom

// recorder is a Sink that records everything delivered.
type recorder struct {
	mu       sync.Mutex
	msgs     []chat.Message
	signals  []chat.Signal
	degraded bool
	changed  chan struct{} // signalled after every call
	panicOn  string        // Deliver panics (once) on a message with this text
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Deliver(m chat.Message) {
	r.mu.Lock()
	if r.panicOn != "" && m.Text == r.panicOn {
		r.panicOn = ""
		r.mu.Unlock()
		panic("test sink: " + m.Text)
	}
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) SetDegraded(d bool) {
	r.mu.Lock()
	r.degraded = d
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) EndSession(string, string) {}

func (r *recorder) Signal(s chat.Signal) {
	r.mu.Lock()
	r.signals = append(r.signals, s)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.Text
	}
	return out
}

// waitFor waits until cond holds, failing t after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling an outside process's effect
	}
}

// faults is a go-redis hook that fails or holds chosen commands.
type faults struct {
	failXRange atomic.Bool  // XRANGE fails, as on a timeout
	failed     atomic.Int64 // XRANGE calls failed so far
	hold       atomic.Pointer[chan struct{}]
	held       chan struct{} // signalled when an XRANGE is being held
	slowPub    atomic.Int64  // nanoseconds each PUBLISH is held before it is sent
}

func newFaults() *faults { return &faults{held: make(chan struct{}, 16)} }

var errInjected = errors.New("injected fault: i/o timeout")

func (f *faults) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if d := f.slowPub.Load(); d > 0 && cmd.Name() == "publish" {
			time.Sleep(time.Duration(d)) // the injected delay itself
		}
		if cmd.Name() == "xrange" {
			if f.failXRange.Load() {
				f.failed.Add(1)
				cmd.SetErr(errInjected)
				return errInjected
			}
			if ch := f.hold.Load(); ch != nil {
				f.held <- struct{}{}
				<-*ch
			}
		}
		return next(ctx, cmd)
	}
}
func (f *faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

type fixture struct {
	t    testing.TB
	rs   *redistest.Server
	rdb  *redis.Client // plain client for the test's own commands
	b    *Broker
	sink *recorder
	f    *faults
}

func testConfig() Config {
	return Config{
		HistoryLen: 10000, WaitTimeout: time.Second,
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 2 * time.Second, OpTimeout: 3 * time.Second,
	}
}

// start runs a broker with a fault-injecting client and waits until it is
// ready.
func start(t testing.TB, cfg Config) *fixture {
	t.Helper()
	rs := redistest.Start(t)
	fx := &fixture{t: t, rs: rs, rdb: rs.Client(), sink: newRecorder(), f: newFaults()}
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	client.AddHook(fx.f)
	t.Cleanup(func() { client.Close() })
	fx.b = New(client, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fx.b.Run(ctx, fx.sink) }()
	go func() { defer wg.Done(); fx.b.RunPublisher(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	lease, err := fx.b.Acquire(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lease.Release)
	waitFor(t, 10*time.Second, "the broker to be ready", fx.b.Ready)
	return fx
}

func (fx *fixture) publish(text string) chat.Message {
	fx.t.Helper()
	m, err := fx.b.Publish(context.Background(), room, "tok-"+text, chat.Message{User: "alice", UID: "alice", Text: text, Time: time.Now()})
	if err != nil {
		fx.t.Fatalf("publish %q: %v", text, err)
	}
	return m
}

// storeUnpublished stores a message the way the publish script does but
// never publishes it: exactly what subscribers see when go-redis drops a
// message from a full channel, or the pub/sub connection missed it.
func (fx *fixture) storeUnpublished(text string) {
	fx.t.Helper()
	ctx := context.Background()
	seq := fx.rdb.Incr(ctx, seqKey(room)).Val()
	body, _ := chat.Message{User: "alice", UID: "alice", Text: text, Time: time.Now()}.Body()
	if err := fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(room), Values: []any{"s", seq, "m", string(body)}}).Err(); err != nil {
		fx.t.Fatal(err)
	}
}

// wantTexts waits until the sink holds exactly want (in this order), and
// fails at once on anything else: a duplicate, a reorder, a stranger.
func (fx *fixture) wantTexts(want ...string) {
	fx.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := fx.sink.texts()
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				fx.t.Fatalf("sink got %q, want %q", got, want)
			}
		}
		if len(got) > len(want) {
			fx.t.Fatalf("sink got %q, want %q", got, want)
		}
		if len(got) == len(want) {
			return
		}
		select {
		case <-fx.sink.changed:
		case <-deadline:
			fx.t.Fatalf("sink got %q, want %q", got, want)
		}
	}
}

// TestDeliversInOrder: every message once, in publish order, with
// consecutive sequence numbers.
func TestDeliversInOrder(t *testing.T) {
	fx := start(t, testConfig())
	var want []string
	for i := range 50 {
		want = append(want, "m"+strconv.Itoa(i))
		fx.publish(want[i])
	}
	fx.wantTexts(want...)
	fx.sink.mu.Lock()
	defer fx.sink.mu.Unlock()
	for i := 1; i < len(fx.sink.msgs); i++ {
		if fx.sink.msgs[i].Seq != fx.sink.msgs[i-1].Seq+1 {
			t.Fatalf("sequence numbers %d then %d", fx.sink.msgs[i-1].Seq, fx.sink.msgs[i].Seq)
		}
	}
}

// TestSequenceGapFillsFromHistory (defect 7): a message that never arrived
// on the channel (go-redis drops one when its buffer stays full) is noticed
// by the jump in sequence numbers at the next message and filled from
// history, before that next one.
func TestSequenceGapFillsFromHistory(t *testing.T) {
	fx := start(t, testConfig())
	fx.publish("first")
	fx.wantTexts("first")
	fx.storeUnpublished("dropped")
	fx.publish("after")
	fx.wantTexts("first", "dropped", "after")
	if s := fx.b.Stats(); s.Gaps != 1 {
		t.Fatalf("stats %+v: want 1 gap", s)
	}
}

// TestFailedFillHoldsLive (defect 1): when the gap fill fails, live messages
// are held back (the subscription is re-established) until a fill succeeds,
// so nothing published during the gap is lost and the order stays history
// order.
func TestFailedFillHoldsLive(t *testing.T) {
	fx := start(t, testConfig())
	fx.publish("before")
	fx.wantTexts("before")

	fx.f.failXRange.Store(true)
	fx.storeUnpublished("gap-1")
	fx.storeUnpublished("gap-2")
	fx.publish("live-1") // reveals the gap; its fill fails
	fx.publish("live-2")
	waitFor(t, 10*time.Second, "fills to fail", func() bool { return fx.f.failed.Load() >= 3 })
	// Also drop the subscription itself: the fill on re-subscribing fails too.
	if err := fx.rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	fx.publish("live-3")
	n := fx.f.failed.Load()
	waitFor(t, 10*time.Second, "more fills to fail", func() bool { return fx.f.failed.Load() >= n+2 })
	if got := fx.sink.texts(); len(got) != 1 {
		t.Fatalf("delivered %q while the gap fill was failing; want only the message before the gap", got)
	}
	fx.f.failXRange.Store(false)
	fx.wantTexts("before", "gap-1", "gap-2", "live-1", "live-2", "live-3")
	fx.publish("after")
	fx.wantTexts("before", "gap-1", "gap-2", "live-1", "live-2", "live-3", "after")
}

// TestDuplicateGuard: messages published while a (re)subscription's fill is
// reading history arrive twice, from the fill and live; the live copies are
// recognised as delivered, without another history read.
func TestDuplicateGuard(t *testing.T) {
	fx := start(t, testConfig())
	fx.publish("before")
	fx.wantTexts("before")
	release := make(chan struct{})
	fx.f.hold.Store(&release)
	if err := fx.rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select { // the re-subscription's fill is reading history
	case <-fx.f.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no gap fill after the subscription was killed")
	}
	fx.f.hold.Store(nil)
	fx.publish("during-1")
	fx.publish("during-2")
	fills := fx.b.Stats().Fills
	close(release)
	fx.wantTexts("before", "during-1", "during-2")
	waitFor(t, 10*time.Second, "the live copies", func() bool { return fx.b.Stats().Duplicates == 2 })
	fx.publish("after")
	fx.wantTexts("before", "during-1", "during-2", "after")
	if s := fx.b.Stats(); s.Fills != fills || s.Duplicates != 2 {
		t.Fatalf("stats %+v: want the 2 duplicates skipped and no fill after the held one (%d)", s, fills)
	}
}

// TestUntrustedChannel (defect 2): whatever else is published on the
// channel or written to history (a mistyped redis-cli command, an older
// version) is skipped and counted; it never crashes the loop, never
// silences it, and never moves the position past what history holds.
func TestUntrustedChannel(t *testing.T) {
	fx := start(t, testConfig())
	ctx := context.Background()
	fx.publish("m1")
	fx.wantTexts("m1")
	seq := fx.rdb.Get(ctx, seqKey(room)).Val()
	next, _ := strconv.Atoi(seq)
	body := `{"user":"mallory","uid":"mallory","text":"forged","time":"2026-01-01T00:00:00Z"}`
	for _, p := range []string{
		"99999999999999-0 ", // crashed every instance once
		"99999999999999-0 " + strconv.Itoa(next+1) + " " + body, // the next sequence number, an ID far in the future
		fmt.Sprintf("%d-0 %d %s", time.Now().Add(time.Hour).UnixMilli(), next+1, body),
		"1-1 1 {}",
		"hello",
		"",
		" ",
		"5-5 x " + body,
		"5-5 0 " + body,
		"0-0 1 " + body,
		"-1-1 1 " + body,
	} {
		if err := fx.rdb.Publish(ctx, room, p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A history entry without its body field, and one with a broken body.
	fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(room), Values: []any{"s", fx.rdb.Incr(ctx, seqKey(room)).Val(), "x", "y"}})
	fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(room), Values: []any{"s", fx.rdb.Incr(ctx, seqKey(room)).Val(), "m", "{"}})
	// An older version's message: stored without a sequence number and
	// published as "<id> <body>". History has it, so it is delivered.
	oldBody, _ := chat.Message{User: "old", UID: "old", Text: "from an old version", Time: time.Now()}.Body()
	id := fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(room), Values: []any{"m", string(oldBody)}}).Val()
	fx.rdb.Publish(ctx, room, id+" "+string(oldBody))
	fx.publish("m2")
	fx.publish("m3")
	fx.wantTexts("m1", "from an old version", "m2", "m3")
	// Pub/sub is at-most-once, so not every bad payload is sure to arrive;
	// the two bad history entries always do.
	s := fx.b.Stats()
	t.Logf("stats %+v", s)
	if s.Malformed < 3 || s.Panics != 0 {
		t.Fatalf("stats %+v: want the bad payloads and entries counted as malformed, no panic", s)
	}
	if !fx.b.Ready() {
		t.Fatal("the broker is not ready after bad payloads")
	}
}

// TestPanicRecovery: a panic while delivering one message ends that
// subscription, not the process; the next one resumes from the position,
// so later messages, including those published meanwhile, all arrive.
func TestPanicRecovery(t *testing.T) {
	fx := start(t, testConfig())
	fx.sink.mu.Lock()
	fx.sink.panicOn = "boom"
	fx.sink.mu.Unlock()
	fx.publish("m1")
	fx.publish("boom")
	fx.publish("m2")
	fx.publish("m3")
	fx.wantTexts("m1", "m2", "m3")
	if s := fx.b.Stats(); s.Panics != 1 {
		t.Fatalf("stats %+v: want 1 recovered panic", s)
	}
}

// TestProbeRTT: each probe that comes back reports its round trip, which
// includes the time its PUBLISH took.
func TestProbeRTT(t *testing.T) {
	var mu sync.Mutex
	var rtts []time.Duration
	cfg := testConfig()
	cfg.ProbeRTT = func(d time.Duration) {
		mu.Lock()
		rtts = append(rtts, d)
		mu.Unlock()
	}
	fx := start(t, cfg)
	fx.f.slowPub.Store(int64(50 * time.Millisecond))
	mu.Lock()
	rtts = nil
	mu.Unlock()
	waitFor(t, 10*time.Second, "three probes back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(rtts) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, d := range rtts[1:] { // the first may have been sent before the delay
		if d < 50*time.Millisecond || d > cfg.ProbeTimeout {
			t.Fatalf("probe round trips %v, want each at least the 50ms its publish was held", rtts)
		}
	}
}
