package broker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// entry is one history entry as read from Redis, not yet validated.
type entry struct {
	id   chat.ID
	seq  uint64 // 0 when the entry has none (written by an older version)
	body string
	ok   bool // it has a body field of the right type
}

// readEntry converts a stream entry. Redis always gives valid IDs; an entry
// whose ID does not parse cannot be placed in order and is reported false.
func readEntry(x redis.XMessage) (entry, bool) {
	id, err := chat.ParseID(x.ID)
	if err != nil {
		return entry{}, false
	}
	e := entry{id: id}
	e.body, e.ok = x.Values["m"].(string)
	if s, ok := x.Values["s"].(string); ok {
		e.seq, _ = strconv.ParseUint(s, 10, 64)
	}
	return e, true
}

// decode validates e as a message of room.
func (e entry) decode(room string) (chat.Message, error) {
	if !e.ok {
		return chat.Message{}, fmt.Errorf("%w %s: no body field", chat.ErrMalformed, e.id)
	}
	return chat.DecodeStored(room, e.id, e.seq, []byte(e.body))
}

// skipMalformed counts and logs a history entry or payload that is not a
// valid message.
func (b *Broker) skipMalformed(room, where string, err error) {
	n := b.stats.malformed.Add(1)
	// Log the first ones and then every 1000th: a broken writer flooding
	// the channel must not flood the log too.
	if n <= 10 || n%1000 == 0 {
		b.log.Warn("skipping malformed message", "room", room, "from", where, "err", err, "skipped_total", n)
	}
}

// Recent returns the last n valid messages of room, oldest first, and the
// room's position: the newest entry's ID (0-0 when the history is empty). A
// page that shows these messages starts its stream at that position, so
// nothing posted after the page was rendered is missed.
func (b *Broker) Recent(ctx context.Context, room string, n int64) ([]chat.Message, chat.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	var rng *redis.XMessageSliceCmd
	var edits *redis.IntCmd
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rng = p.XRevRangeN(ctx, historyKey(room), "+", "-", max(n, 1))
		edits = p.HLen(ctx, editsKey(room))
		return nil
	})
	if err != nil {
		return nil, chat.ID{}, fmt.Errorf("read recent messages: %w: %w", ErrUnavailable, err)
	}
	xs := rng.Val()
	var pos chat.ID
	if len(xs) > 0 {
		if e, ok := readEntry(xs[0]); ok {
			pos = e.id
		}
	}
	if n <= 0 {
		return nil, pos, nil // read only for the position
	}
	out := make([]chat.Message, 0, len(xs))
	for i := len(xs) - 1; i >= 0; i-- {
		e, ok := readEntry(xs[i])
		if !ok {
			continue
		}
		m, err := e.decode(room)
		if err != nil {
			b.skipMalformed(room, "history", err)
			continue
		}
		out = append(out, m)
	}
	// Pages show messages as they are now: moderation entries left out,
	// edits applied (deleted messages are gone from the history).
	out, err = b.applyEdits(ctx, room, out, edits.Val() > 0)
	if err != nil {
		return nil, chat.ID{}, err
	}
	return out, pos, nil
}

// Newest returns the ID of room's newest history entry (zero when empty).
func (b *Broker) Newest(ctx context.Context, room string) (chat.ID, error) {
	p, err := b.newest(ctx, room)
	return p.id, err
}

func (b *Broker) newest(ctx context.Context, room string) (position, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	xs, err := b.rdb.XRevRangeN(ctx, historyKey(room), "+", "-", 1).Result()
	if err != nil {
		return position{}, fmt.Errorf("read history position: %w: %w", ErrUnavailable, err)
	}
	if len(xs) == 0 {
		return position{}, nil
	}
	e, ok := readEntry(xs[0])
	if !ok {
		return position{}, fmt.Errorf("history of %s: unreadable entry ID %q", room, xs[0].ID)
	}
	return position{id: e.id, seq: e.seq}, nil
}

// readAfter returns up to n entries of room newer than after, oldest first.
func (b *Broker) readAfter(ctx context.Context, room string, after chat.ID, n int64) ([]entry, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	xs, err := b.rdb.XRangeN(ctx, historyKey(room), exclusive(after), "+", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read history: %w: %w", ErrUnavailable, err)
	}
	return readEntries(xs), nil
}

func readEntries(xs []redis.XMessage) []entry {
	out := make([]entry, 0, len(xs))
	for _, x := range xs {
		if e, ok := readEntry(x); ok {
			out = append(out, e)
		}
	}
	return out
}

// exclusive is the XRANGE start "after id": "(" id, or "-" for the zero
// position (everything).
func exclusive(id chat.ID) string {
	if id.IsZero() {
		return "-"
	}
	return "(" + id.String()
}

// NewestMany is Newest for several rooms in one round trip (per node).
func (b *Broker) NewestMany(ctx context.Context, rooms []string) (map[string]chat.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	cmds := make([]*redis.XMessageSliceCmd, len(rooms))
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range rooms {
			cmds[i] = p.XRevRangeN(ctx, historyKey(r), "+", "-", 1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history positions: %w: %w", ErrUnavailable, err)
	}
	out := make(map[string]chat.ID, len(rooms))
	for i, r := range rooms {
		out[r] = chat.ID{}
		if xs := cmds[i].Val(); len(xs) > 0 {
			if e, ok := readEntry(xs[0]); ok {
				out[r] = e.id
			}
		}
	}
	return out, nil
}
