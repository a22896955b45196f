package broker

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"chatroom/internal/chat"
)

// replayAll replays room from..upto and returns the texts in emitted order
// and the largest page emitted.
func replayAll(t *testing.T, b *Broker, from, upto chat.ID, lim ReplayLimits) ([]string, replayOutcome, int) {
	t.Helper()
	var texts []string
	largest := 0
	plan, err := b.PlanReplay(context.Background(), room, from, upto, lim)
	if err != nil {
		t.Fatal(err)
	}
	res, err := plan.Run(context.Background(), func(ms []chat.Message) error {
		largest = max(largest, len(ms))
		for _, m := range ms {
			texts = append(texts, m.Text)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != len(texts) {
		t.Fatalf("result %+v, but %d emitted", res, len(texts))
	}
	return texts, replayOutcome{res, plan.Capped, plan.Trimmed}, largest
}

type replayOutcome struct {
	ReplayResult
	Capped, Trimmed bool
}

// TestReplayCap (defect 3): a replay sends at most the configured count and
// bytes, the newest messages that fit, in pages, in order, and says it was
// capped; within the caps it sends everything after the position.
func TestReplayCap(t *testing.T) {
	fx := start(t, testConfig())
	var ids []chat.ID
	const n = 750
	for i := range n {
		m := fx.publish("m" + strconv.Itoa(i) + strings.Repeat("x", 90))
		id, _ := chat.ParseID(m.ID)
		ids = append(ids, id)
	}
	text := func(i int) string { return "m" + strconv.Itoa(i) + strings.Repeat("x", 90) }
	upto := ids[n-1]
	check := func(name string, from chat.ID, lim ReplayLimits, first int, capped bool) {
		t.Run(name, func(t *testing.T) {
			got, res, largest := replayAll(t, fx.b, from, upto, lim)
			if len(got) != n-first || res.Capped != capped || (len(got) > 0 && res.Last != upto) || largest > replayPage {
				t.Fatalf("got %d messages (pages up to %d), result %+v; want %d from m%d, capped %v", len(got), largest, res, n-first, first, capped)
			}
			for i, s := range got {
				if s != text(first+i) {
					t.Fatalf("message %d is %.8q, want %.8q", i, s, text(first+i))
				}
			}
		})
	}
	big := ReplayLimits{Count: 100000, Bytes: 1 << 30}
	check("from the oldest, uncapped", ids[0], big, 1, false)
	check("from the start position", chat.ID{}, big, 0, false)
	check("a few", ids[n-4], big, n-3, false)
	check("count cap", ids[0], ReplayLimits{Count: 300, Bytes: 1 << 30}, n-300, true)
	// Stored bodies are about 170 bytes: 20 KB hold about 117 of them.
	got, res, _ := replayAll(t, fx.b, ids[0], upto, ReplayLimits{Count: 300, Bytes: 20000})
	if !res.Capped || len(got) < 100 || len(got) > 130 || got[len(got)-1] != text(n-1) {
		t.Fatalf("byte cap: %d messages, result %+v", len(got), res)
	}
	check("nothing new", upto, big, n, false)
}

// TestReplayTrimmed: a position older than what history still keeps is
// reported as trimmed.
func TestReplayTrimmed(t *testing.T) {
	cfg := testConfig()
	cfg.HistoryLen = 100
	fx := start(t, cfg)
	first := fx.publish("first")
	for i := range 400 {
		fx.publish("m" + strconv.Itoa(i))
	}
	last := fx.publish("last")
	from, _ := chat.ParseID(first.ID)
	upto, _ := chat.ParseID(last.ID)
	_, res, _ := replayAll(t, fx.b, from, upto, ReplayLimits{Count: 1000, Bytes: 1 << 20})
	if !res.Trimmed {
		t.Fatalf("result %+v: want trimmed", res)
	}
	// Recent knows the position even when asked for no messages.
	msgs, pos, err := fx.b.Recent(context.Background(), room, 0)
	if err != nil || len(msgs) != 0 || pos != upto {
		t.Fatalf("Recent(0) = %d messages, %v, %v; want none at %v", len(msgs), pos, err, upto)
	}
}
