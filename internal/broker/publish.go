package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// publishScript stores and publishes one message, atomically, so that live
// order equals history order on every instance:
//
//	INCR the room's sequence number,
//	XADD it and the body to the room's capped history (MAXLEN ~),
//	PUBLISH "<id> <seq> <body>" on the room's channel (SPUBLISH on a cluster,
//	where the channel hashes to the same slot as the keys' hash tag).
//
// KEYS[2] makes it idempotent: run again with the same key within ARGV[5]
// seconds (go-redis retrying after a connection broke mid-reply, or a user
// resending a message whose answer was lost) it returns the first run's
// "<id> <seq>" instead of storing the message twice. The repeat still writes
// (it refreshes the key), so a WAIT after it counts replicas that have
// everything up to now, the original message included.
//
// A room's history and sequence expire ARGV[6] seconds after its last
// message (0: never), so abandoned rooms do not stay in Redis forever; they
// expire together, so a later message starts the room afresh at seq 1.
//
// KEYS: history, idempotency key, sequence. ARGV: MAXLEN, body, channel,
// publish command, idempotency TTL in seconds, room TTL in seconds.
var publishScript = redis.NewScript(`
local seen = redis.call('GET', KEYS[2])
if seen then
  redis.call('SET', KEYS[2], seen, 'EX', ARGV[5])
  return seen
end
local seq = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 's', seq, 'm', ARGV[2])
redis.call(ARGV[4], ARGV[3], id .. ' ' .. seq .. ' ' .. ARGV[2])
local res = id .. ' ' .. seq
redis.call('SET', KEYS[2], res, 'EX', ARGV[5])
if tonumber(ARGV[6] or '0') > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return res
`)

// idempotencyTTL is how long a publish's idempotency key is remembered.
const idempotencyTTL = 10 * time.Minute

func (b *Broker) pubCommand() string {
	if b.cfg.Sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// Publish stores and broadcasts m in room and returns it with its ID and
// sequence number. It returns only once Redis accepted the message (and, if
// configured, enough replicas acknowledged it). token identifies this message
// for idempotency: publishing again with the same token changes nothing and
// returns the same ID.
func (b *Broker) Publish(ctx context.Context, room, token string, m chat.Message) (chat.Message, error) {
	body, err := m.Body()
	if err != nil {
		return chat.Message{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout+b.cfg.WaitTimeout)
	defer cancel()
	keys := []string{historyKey(room), sentKey(room, token), seqKey(room)}
	roomTTL := 0
	if room != chat.DefaultRoom {
		roomTTL = int(b.cfg.RoomTTL.Seconds())
	}
	args := []any{b.cfg.HistoryLen, body, channel(room), b.pubCommand(), int(idempotencyTTL.Seconds()), roomTTL}
	var res string
	if b.cfg.WaitReplicas > 0 {
		res, err = b.publishAndWait(ctx, keys, args)
	} else {
		res, err = b.pub.publish(ctx, keys, args)
	}
	if err != nil {
		return chat.Message{}, fmt.Errorf("publish message: %w: %w", ErrUnavailable, err)
	}
	id, seq, err := parsePublished(res)
	if err != nil {
		return chat.Message{}, fmt.Errorf("publish message: %w", err)
	}
	m.ID, m.Seq, m.Room = id.String(), seq, room
	return m, nil
}

// parsePublished reads the script's answer "<id> <seq>" (or "<id>" from an
// idempotency key an older version wrote).
func parsePublished(res string) (chat.ID, uint64, error) {
	ids, seqs, hasSeq := strings.Cut(res, " ")
	id, err := chat.ParseID(ids)
	if err != nil {
		return chat.ID{}, 0, fmt.Errorf("unexpected answer from the publish script: %w", err)
	}
	if !hasSeq {
		return id, 0, nil
	}
	seq, err := strconv.ParseUint(seqs, 10, 64)
	if err != nil {
		return chat.ID{}, 0, fmt.Errorf("unexpected sequence number from the publish script: %q", seqs)
	}
	return id, seq, nil
}

// publishAndWait runs the script and WAIT on one connection (a pipeline),
// since WAIT counts the acknowledgements of the calling connection's writes.
// In a cluster both go to the master of the room's slot: a keyless WAIT in a
// cluster pipeline would go to an arbitrary node and confirm nothing.
func (b *Broker) publishAndWait(ctx context.Context, keys []string, args []any) (string, error) {
	var node redis.Cmdable = b.rdb
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return "", fmt.Errorf("find the master of %s: %w", keys[0], err)
		}
		node = master
	}
	return b.runAndWait(ctx, node, keys, args, true)
}

func (b *Broker) runAndWait(ctx context.Context, node redis.Cmdable, keys []string, args []any, retryNoScript bool) (string, error) {
	var run, wait *redis.Cmd
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		run = publishScript.EvalSha(ctx, p, keys, args...)
		wait = p.Do(ctx, "WAIT", b.cfg.WaitReplicas, b.cfg.WaitTimeout.Milliseconds())
		return nil
	})
	if err != nil && retryNoScript && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := publishScript.Load(ctx, node).Err(); err != nil {
			return "", err
		}
		return b.runAndWait(ctx, node, keys, args, false)
	}
	if err != nil {
		return "", err
	}
	res, err := run.Text()
	if err != nil {
		return "", err
	}
	n, err := wait.Int64()
	if err != nil {
		return "", fmt.Errorf("wait for replicas: %w", err)
	}
	if n < int64(b.cfg.WaitReplicas) {
		id, _, _ := strings.Cut(res, " ")
		return "", fmt.Errorf("%w: message %s reached %d of %d replicas in %v", ErrNotReplicated, id, n, b.cfg.WaitReplicas, b.cfg.WaitTimeout)
	}
	return res, nil
}

// RunPublisher serves Publish until ctx ends; stop publishing first.
func (b *Broker) RunPublisher(ctx context.Context) { b.pub.run(ctx) }
