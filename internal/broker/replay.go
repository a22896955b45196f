package broker

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// ReplayLimits caps what one (re)connection is replayed. A client that was
// away longer gets the newest messages that fit and a "history trimmed"
// notice, and loads older ones on demand: a replay never costs more than
// these bounds, whatever the history holds.
type ReplayLimits struct {
	Count int // messages
	Bytes int // bytes of stored bodies
}

// ReplayResult says what a replay sent.
type ReplayResult struct {
	Sent   int     // messages emitted
	Last   chat.ID // the newest entry covered (sent, or skipped as malformed); zero if none
	Oldest chat.ID // the oldest message sent; zero if none
}

// ReplayPlan is a replay whose start has been found: PlanReplay decides
// what a (re)connection gets, Run sends it.
type ReplayPlan struct {
	b       *Broker
	room    string
	start   chat.ID // the oldest entry to replay; zero: nothing to replay
	upto    chat.ID
	held    []entry // the whole replay, oldest first, when it fit in one page
	Capped  bool    // more was missed than the limits allow: only the newest are sent
	Trimmed bool    // history no longer holds messages the client had not seen (MAXLEN)
}

// replayPage is how many entries one history read returns, so a replay holds
// at most one page in memory.
const replayPage = 100

// PlanReplay finds what to replay of room after from, up to and including
// upto: everything, or the newest messages within lim. The caller
// subscribed to live messages before reading upto, so everything newer
// arrives live. Only one page of entries is held in memory.
func (b *Broker) PlanReplay(ctx context.Context, room string, from, upto chat.ID, lim ReplayLimits) (*ReplayPlan, error) {
	p := &ReplayPlan{b: b, room: room, upto: upto}
	if !upto.After(from) {
		return p, nil
	}
	// Walk back from upto to the oldest entry after from, or the oldest
	// that still fits the limits.
	var count, size int
	end := upto.String()
	for page := 0; ; page++ {
		es, trimmed, err := b.readBack(ctx, room, end, from, page == 0)
		if err != nil {
			return nil, err
		}
		p.Trimmed = p.Trimmed || trimmed
		for _, e := range es {
			if count+1 > lim.Count || size+len(e.body) > lim.Bytes {
				p.Capped = true
				break
			}
			count++
			size += len(e.body)
			p.start = e.id
		}
		if p.Capped || len(es) < replayPage {
			if page == 0 && !p.Capped {
				slices.Reverse(es)
				p.held = es
			}
			return p, nil
		}
		end = "(" + es[len(es)-1].id.String()
	}
}

// Start is the oldest message the plan replays (zero if none).
func (p *ReplayPlan) Start() chat.ID { return p.start }

// Upto is the newest entry the plan covers: live messages up to it are the
// replay's to send.
func (p *ReplayPlan) Upto() chat.ID { return p.upto }

// Run emits the plan's messages oldest first, in pages of at most
// replayPage. emit's error ends the replay (the client is too slow, or gone).
func (p *ReplayPlan) Run(ctx context.Context, emit func([]chat.Message) error) (ReplayResult, error) {
	var res ReplayResult
	if p.start.IsZero() {
		return res, nil // nothing new, or not even one message fits
	}
	if p.held != nil {
		return res, p.b.emitEntries(p.room, p.held, &res, emit)
	}
	first := p.start.String()
	for {
		ctx, cancel := context.WithTimeout(ctx, p.b.cfg.OpTimeout)
		xs, err := p.b.rdb.XRangeN(ctx, historyKey(p.room), first, p.upto.String(), replayPage).Result()
		cancel()
		if err != nil {
			return res, fmt.Errorf("replay history: %w: %w", ErrUnavailable, err)
		}
		es := readEntries(xs)
		if len(es) > 0 {
			if err := p.b.emitEntries(p.room, es, &res, emit); err != nil {
				return res, err
			}
		}
		if len(xs) < replayPage {
			return res, nil
		}
		first = "(" + es[len(es)-1].id.String()
	}
}

// readBack reads up to replayPage entries from end back to (not including)
// from, newest first. With checkTrim it also tells whether history was
// trimmed past from: MAXLEN ~ trims whole nodes, so a trimmed stream is at
// least HistoryLen long, and an oldest kept entry newer than from then
// means the client missed messages that are gone.
func (b *Broker) readBack(ctx context.Context, room, end string, from chat.ID, checkTrim bool) ([]entry, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	key := historyKey(room)
	var rng, oldest *redis.XMessageSliceCmd
	var length *redis.IntCmd
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rng = p.XRevRangeN(ctx, key, end, exclusive(from), replayPage)
		if checkTrim {
			oldest = p.XRangeN(ctx, key, "-", "+", 1)
			length = p.XLen(ctx, key)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("replay history: %w: %w", ErrUnavailable, err)
	}
	trimmed := false
	if checkTrim {
		if o := oldest.Val(); len(o) == 1 && length.Val() >= b.cfg.HistoryLen {
			if e, ok := readEntry(o[0]); ok && e.id.After(from) {
				trimmed = true
			}
		}
	}
	return readEntries(rng.Val()), trimmed, nil
}

// emitEntries validates es (oldest first) and emits the valid ones.
func (b *Broker) emitEntries(room string, es []entry, res *ReplayResult, emit func([]chat.Message) error) error {
	msgs := make([]chat.Message, 0, len(es))
	for _, e := range es {
		res.Last = e.id
		m, err := e.decode(room)
		if err != nil {
			b.skipMalformed(room, "history", err)
			continue
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	if res.Oldest.IsZero() {
		res.Oldest, _ = chat.ParseID(msgs[0].ID)
	}
	res.Sent += len(msgs)
	return emit(msgs)
}
