package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// Joined rooms and the list of active rooms. A user's joined rooms are kept
// in Redis (not in the cookie) so that every instance and every device of
// the user agrees; the set expires when unused, and is capped.

// ErrTooManyRooms: a join beyond the per-user cap.
var ErrTooManyRooms = errors.New("too many rooms joined")

const (
	joinedTTL    = 30 * 24 * time.Hour // a user's joined rooms are forgotten after this long unused
	activeKept   = 1000                // rooms kept in the active list
	activeMaxAge = 7 * 24 * time.Hour  // rooms without a message for this long leave the active list
	touchEvery   = 10 * time.Second    // how often one process refreshes a room's place in the active list
)

func joinedKey(uid string) string { return "chat:rooms-of:" + uid }

const activeKey = "chat:active"

// joinScript adds ARGV[1] to the user's rooms unless they hold ARGV[2]
// already. It returns 1 (joined), 0 (was joined) or -1 (at the cap).
// KEYS: the user's rooms. ARGV: room, cap, TTL seconds, score.
var joinScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 0
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return -1
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`)

// Join adds room to uid's rooms; joined reports whether it was new to them.
// A user at maxRooms gets ErrTooManyRooms.
func (b *Broker) Join(ctx context.Context, uid, room string, maxRooms int) (joined bool, err error) {
	if !chat.ValidRoom(room) {
		return false, chat.RoomError(room)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	n, err := joinScript.Run(ctx, b.rdb, []string{joinedKey(uid)}, room, maxRooms, int(joinedTTL.Seconds()), time.Now().UnixMilli()).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("%w: join: %w", ErrUnavailable, err)
	case n < 0:
		return false, ErrTooManyRooms
	}
	return n == 1, nil
}

// Leave removes room from uid's rooms.
func (b *Broker) Leave(ctx context.Context, uid, room string) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	if err := b.rdb.ZRem(ctx, joinedKey(uid), room).Err(); err != nil {
		return fmt.Errorf("%w: leave: %w", ErrUnavailable, err)
	}
	return nil
}

// Joined returns uid's rooms in composite-position order (chat.SortRooms),
// at most limit of them, skipping anything that is not a room name.
func (b *Broker) Joined(ctx context.Context, uid string, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	rs, err := b.rdb.ZRange(ctx, joinedKey(uid), 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: joined rooms: %w", ErrUnavailable, err)
	}
	out := rs[:0]
	for _, r := range rs {
		if chat.ValidRoom(r) {
			out = append(out, r)
		}
	}
	return chat.SortRooms(out), nil
}

// ActiveRoom is an entry of the active rooms list.
type ActiveRoom struct {
	Room string    `json:"room"`
	Last time.Time `json:"last"` // last message (or creation)
}

// Touch puts room at the top of the active list (a message was posted, or
// the room was created). It is rate-limited per process and room, so a busy
// room costs one extra command per touchEvery.
func (b *Broker) Touch(ctx context.Context, room string) error {
	now := time.Now()
	b.mu.Lock()
	if last, ok := b.touched[room]; ok && now.Sub(last) < touchEvery {
		b.mu.Unlock()
		return nil
	}
	if len(b.touched) >= 4*activeKept {
		clear(b.touched) // bounded: forgetting only costs a few extra touches
	}
	b.touched[room] = now
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, activeKey, redis.Z{Score: float64(now.UnixMilli()), Member: room})
		p.ZRemRangeByRank(ctx, activeKey, 0, -activeKept-1)
		p.ZRemRangeByScore(ctx, activeKey, "-inf", strconv.FormatInt(now.Add(-activeMaxAge).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: active rooms: %w", ErrUnavailable, err)
	}
	return nil
}

// Active returns up to n rooms with recent messages, newest first.
func (b *Broker) Active(ctx context.Context, n int) ([]ActiveRoom, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	zs, err := b.rdb.ZRevRangeWithScores(ctx, activeKey, 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: active rooms: %w", ErrUnavailable, err)
	}
	out := make([]ActiveRoom, 0, len(zs))
	for _, z := range zs {
		r, ok := z.Member.(string)
		if !ok || !chat.ValidRoom(r) {
			continue
		}
		out = append(out, ActiveRoom{Room: r, Last: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}
