package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tests of the package alone against a real redis-server (internal/redistest):
// several Presence values with different Instance ids on one Redis are
// several server processes. What they announce is recorded raw by a go-redis
// subscriber; a fence (a payload the test publishes on the same channel,
// after the instances have processed everything due) proves that nothing
// else is still on its way, since one channel's messages arrive in publish
// order.

// testCfg is short on purpose: tests wait for TTLs and grace periods to
// pass, so everything is about a second.
func testCfg(instance string) Config {
	return Config{Instance: instance, TTL: time.Second, Refresh: 200 * time.Millisecond, Grace: time.Second, OpTimeout: 2 * time.Second}
}

// instance is one running Presence, as one server process.
type instance struct {
	*Presence
	stop func() // ends Run and waits for it: a crash, since nothing is departed
}

// startInstance runs a Presence on its own client of addr (cluster if
// cluster is set) until stop or the end of the test.
func startInstance(t *testing.T, rdb redis.UniversalClient, cfg Config) *instance {
	t.Helper()
	p := New(rdb, cfg, slog.New(slog.NewTextHandler(t.Output(), nil)).With("instance", cfg.Instance))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &instance{Presence: p, stop: stop}
}

// newClient returns a client of the standalone server at addr, closed at
// the end of the test, with hooks added.
func newClient(t *testing.T, addr string, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	for _, h := range hooks {
		c.AddHook(h)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// settled waits until p has completed a step that began after at: every
// departure due by then has been written (or has failed).
func settled(t *testing.T, p *Presence, at time.Time) {
	t.Helper()
	waitFor(t, 10*time.Second, "a step after "+at.Format("15:04:05.000"), func() bool {
		return p.lastStep.Load() > at.UnixNano()
	})
}

// waitFor polls cond (a condition on another process or goroutine),
// failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's or process's effect
	}
}

// heard is one announcement as the subscriber received it.
type heard struct {
	Announcement
	at time.Time
}

func (h heard) String() string { return h.Kind + " " + h.Room + "/" + h.UID }

// listener records every payload on some rooms' channels, raw and in order.
type listener struct {
	t       *testing.T
	rdb     redis.UniversalClient
	sharded bool

	mu      sync.Mutex
	heard   []heard         // presence announcements
	fences  map[string]bool // fence payloads received
	strange []string        // anything else
	changed chan struct{}   // signalled after each payload
	nfence  atomic.Int64
}

// listen subscribes to the channels of rooms (SSUBSCRIBE, one per room,
// when sharded) and returns once every subscription is confirmed.
func listen(t *testing.T, rdb redis.UniversalClient, sharded bool, rooms ...string) *listener {
	t.Helper()
	l := &listener{t: t, rdb: rdb, sharded: sharded, fences: make(map[string]bool), changed: make(chan struct{}, 1)}
	for _, room := range rooms {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var ps *redis.PubSub
		if sharded {
			ps = rdb.SSubscribe(ctx, channel(room))
		} else {
			ps = rdb.Subscribe(ctx, channel(room))
		}
		if _, err := ps.Receive(ctx); err != nil {
			cancel()
			t.Fatalf("subscribe to %s: %v", channel(room), err)
		}
		cancel()
		ch := ps.Channel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range ch {
				l.record(m.Payload)
			}
		}()
		t.Cleanup(func() { ps.Close(); <-done })
	}
	return l
}

func (l *listener) record(payload string) {
	at := time.Now()
	l.mu.Lock()
	switch {
	case strings.HasPrefix(payload, "fence:"):
		l.fences[payload] = true
	default:
		if a, err := ParseAnnouncement(payload); err == nil {
			l.heard = append(l.heard, heard{a, at})
		} else {
			l.strange = append(l.strange, payload)
		}
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// await waits until cond holds over what was heard.
func (l *listener) await(timeout time.Duration, what string, cond func(h []heard) bool) []heard {
	l.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		h := append([]heard(nil), l.heard...)
		ok := cond(h)
		strange := append([]string(nil), l.strange...)
		l.mu.Unlock()
		if len(strange) > 0 {
			l.t.Fatalf("unexpected payloads on the channel: %q", strange)
		}
		if ok {
			return h
		}
		select {
		case <-l.changed:
		case <-deadline.C:
			l.t.Fatalf("timed out after %v waiting for %s; heard %v", timeout, what, h)
		}
	}
}

// awaitN waits until n announcements were heard and returns them.
func (l *listener) awaitN(n int) []heard {
	l.t.Helper()
	return l.await(10*time.Second, fmt.Sprintf("%d announcements", n), func(h []heard) bool { return len(h) >= n })
}

// fence publishes a marker on room's channel and waits for it: whatever
// was published on that channel before has been heard by then.
func (l *listener) fence(room string) []heard {
	l.t.Helper()
	payload := fmt.Sprintf("fence:%d", l.nfence.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if l.sharded {
		err = l.rdb.SPublish(ctx, channel(room), payload).Err()
	} else {
		err = l.rdb.Publish(ctx, channel(room), payload).Err()
	}
	if err != nil {
		l.t.Fatalf("publish fence: %v", err)
	}
	return l.await(10*time.Second, "fence "+payload, func([]heard) bool {
		return l.fences[payload] // l.mu is held by await
	})
}

// kinds renders announcements as "join dev/alice" lines, to compare whole
// histories at once.
func kinds(h []heard) string {
	s := make([]string, len(h))
	for i, a := range h {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// want fails unless the whole history is exactly want.
func want(t *testing.T, h []heard, want ...string) {
	t.Helper()
	if got := kinds(h); got != strings.Join(want, ", ") {
		t.Fatalf("heard [%s], want [%s]", got, strings.Join(want, ", "))
	}
}

// faults is a go-redis hook that fails or holds this client's writes.
type faults struct {
	fail   atomic.Bool                   // every command and pipeline fails, as on a timeout
	failed atomic.Int64                  // commands and pipelines failed so far
	hold   atomic.Pointer[chan struct{}] // pipelines wait until this channel is closed
	held   chan struct{}                 // signalled when a pipeline is being held
}

var errInjected = errors.New("injected fault: i/o timeout")

func newFaults() *faults { return &faults{held: make(chan struct{}, 64)} }

func (f *faults) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.fail.Load() {
			f.failed.Add(1)
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}
func (f *faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ch := f.hold.Load(); ch != nil {
			select {
			case f.held <- struct{}{}:
			default:
			}
			<-*ch
		}
		if f.fail.Load() {
			f.failed.Add(1)
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
