package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// Errors of Moderate. Their messages are shown to users.
var (
	ErrNoSuchMessage = errors.New("there is no such message in this room (it may have been deleted)")
	ErrNotYours      = errors.New("only its author can do that to a message")
	ErrEditExpired   = errors.New("the time to change this message is over")
)

// editsKey is the hash of a room's edited messages: message ID → its
// current text and when it was edited (JSON), read by history pages.
func editsKey(room string) string { return "chat:{" + room + "}:edits" }

// moderateScript deletes or edits one message, atomically with the entry
// that tells everybody, so that a reader sees either neither or both:
//
//	check the target is a message of the history (not a moderation entry),
//	  by the actor unless an admin deletes it, and, for the author, younger
//	  than the window on Redis's clock (the ID's milliseconds are Redis's);
//	INCR the sequence, XADD the moderation entry, PUBLISH it as any message
//	  (so it is ordered, gap-filled and replayed like one);
//	delete: XDEL the target (its text is gone from Redis; the entry naming
//	  it stays as the tombstone, and positions at or around it stay valid,
//	  since XRANGE bounds need not exist); edit: HSET the new text.
//
// KEYS: history, sequence, edits. ARGV: MAXLEN, op, target, body, channel,
// publish command, room TTL s, actor uid, admin (1/0), window ms, edit JSON.
// It answers "<id> <seq>", or an error code: GONE, NOTYOURS, EXPIRED.
var moderateScript = redis.NewScript(`
local t = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #t == 0 then return 'GONE' end
local raw
local f = t[1][2]
for i = 1, #f, 2 do if f[i] == 'm' then raw = f[i+1] end end
if not raw then return 'GONE' end
local ok, msg = pcall(cjson.decode, raw)
if not ok or type(msg) ~= 'table' or msg.op ~= nil then return 'GONE' end
if ARGV[9] ~= '1' or ARGV[2] == 'edit' then
  if msg.uid ~= ARGV[8] then return 'NOTYOURS' end
  local now = redis.call('TIME')
  local nowms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local ms = tonumber(string.match(ARGV[3], '^(%d+)-'))
  if nowms - ms > tonumber(ARGV[10]) then return 'EXPIRED' end
end
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 's', seq, 'm', ARGV[4])
redis.call(ARGV[6], ARGV[5], id .. ' ' .. seq .. ' ' .. ARGV[4])
if ARGV[2] == 'delete' then
  redis.call('XDEL', KEYS[1], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[11])
  if redis.call('HLEN', KEYS[3]) > tonumber(ARGV[1]) then
    -- Forget edits of messages trimmed from the history.
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
    if #first > 0 then
      local fm, fs = string.match(first[1][1], '^(%d+)-(%d+)$')
      fm, fs = tonumber(fm), tonumber(fs)
      for _, k in ipairs(redis.call('HKEYS', KEYS[3])) do
        local km, ks = string.match(k, '^(%d+)-(%d+)$')
        km, ks = tonumber(km), tonumber(ks)
        if km == nil or km < fm or (km == fm and ks < fs) then redis.call('HDEL', KEYS[3], k) end
      end
    end
  end
end
if tonumber(ARGV[7]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
return id .. ' ' .. seq
`)

// Moderation is one delete or edit of a message.
type Moderation struct {
	Op     string        // chat.OpDelete or chat.OpEdit
	Target chat.ID       // the message
	User   string        // who does it (display name)
	UID    string        // and their canonical name
	Admin  bool          // an admin may delete any message, at any time
	Window time.Duration // the author may act on a message this young
	Text   string        // edit: the new text, already validated
}

// editRecord is a value of the edits hash.
type editRecord struct {
	Text   string    `json:"text"`
	Edited time.Time `json:"edited"`
}

// Moderate deletes or edits a message of room and tells every stream of the
// room, on every instance, with a moderation entry in the room's history.
// It returns that entry (Op, Target, ID, Seq; Text and Edited for an edit).
func (b *Broker) Moderate(ctx context.Context, room string, mod Moderation) (chat.Message, error) {
	if mod.Op != chat.OpDelete && mod.Op != chat.OpEdit {
		return chat.Message{}, fmt.Errorf("moderate: unknown op %q", mod.Op)
	}
	now := time.Now().UTC()
	entry := chat.Message{User: mod.User, UID: mod.UID, Time: now, Op: mod.Op, Target: mod.Target.String()}
	var edit []byte
	if mod.Op == chat.OpEdit {
		entry.Text = mod.Text
		entry.Edited = &now
		var err error
		if edit, err = json.Marshal(editRecord{Text: mod.Text, Edited: now}); err != nil {
			return chat.Message{}, err
		}
	}
	body, err := entry.Body()
	if err != nil {
		return chat.Message{}, err
	}
	roomTTL := 0
	if room != chat.DefaultRoom {
		roomTTL = int(b.cfg.RoomTTL.Seconds())
	}
	admin := "0"
	if mod.Admin {
		admin = "1"
	}
	keys := []string{historyKey(room), seqKey(room), editsKey(room)}
	args := []any{b.cfg.HistoryLen, mod.Op, mod.Target.String(), body, channel(room), b.pubCommand(), roomTTL,
		mod.UID, admin, mod.Window.Milliseconds(), edit}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout+b.cfg.WaitTimeout)
	defer cancel()
	var res string
	if b.cfg.WaitReplicas > 0 {
		res, err = b.scriptAndWait(ctx, moderateScript, keys, args)
	} else {
		res, err = moderateScript.Run(ctx, b.rdb, keys, args...).Text()
	}
	if err != nil {
		return chat.Message{}, fmt.Errorf("moderate message: %w: %w", ErrUnavailable, err)
	}
	switch res {
	case "GONE":
		return chat.Message{}, ErrNoSuchMessage
	case "NOTYOURS":
		return chat.Message{}, ErrNotYours
	case "EXPIRED":
		return chat.Message{}, ErrEditExpired
	}
	id, seq, err := parsePublished(res)
	if err != nil {
		return chat.Message{}, fmt.Errorf("moderate message: %w", err)
	}
	entry.ID, entry.Seq, entry.Room = id.String(), seq, room
	return entry, nil
}

// scriptAndWait runs script and WAIT on one connection (see publishAndWait).
func (b *Broker) scriptAndWait(ctx context.Context, script *redis.Script, keys []string, args []any) (string, error) {
	var node redis.Cmdable = b.rdb
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return "", fmt.Errorf("find the master of %s: %w", keys[0], err)
		}
		node = master
	}
	if err := script.Load(ctx, node).Err(); err != nil {
		return "", err
	}
	var run, wait *redis.Cmd
	if _, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		run = script.EvalSha(ctx, p, keys, args...)
		wait = p.Do(ctx, "WAIT", b.cfg.WaitReplicas, b.cfg.WaitTimeout.Milliseconds())
		return nil
	}); err != nil {
		return "", err
	}
	res, err := run.Text()
	if err != nil {
		return "", err
	}
	if n, err := wait.Int64(); err != nil || n < int64(b.cfg.WaitReplicas) {
		return "", fmt.Errorf("%w: moderation reached %d of %d replicas", ErrNotReplicated, n, b.cfg.WaitReplicas)
	}
	return res, nil
}

// applyEdits drops moderation entries from msgs (pages show messages only)
// and gives edited messages their current text, from the room's edits
// (read only when the room has any: hasEdits).
func (b *Broker) applyEdits(ctx context.Context, room string, msgs []chat.Message, hasEdits bool) ([]chat.Message, error) {
	out := msgs[:0]
	for _, m := range msgs {
		if m.Op == "" {
			out = append(out, m)
		}
	}
	if !hasEdits || len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	for i, m := range out {
		ids[i] = m.ID
	}
	vals, err := b.rdb.HMGet(ctx, editsKey(room), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read edits: %w: %w", ErrUnavailable, err)
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var e editRecord
		if err := json.Unmarshal([]byte(s), &e); err != nil || e.Text == "" || e.Edited.IsZero() {
			b.skipMalformed(room, "edits", fmt.Errorf("%w: edit of %s: %q", chat.ErrMalformed, out[i].ID, clip(s, 80)))
			continue
		}
		out[i].Text = e.Text
		t := e.Edited
		out[i].Edited = &t
	}
	return out, nil
}

// Message returns one message of room as pages show it (edits applied), or
// ErrNoSuchMessage.
func (b *Broker) Message(ctx context.Context, room string, id chat.ID) (chat.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	xs, err := b.rdb.XRangeN(ctx, historyKey(room), id.String(), id.String(), 1).Result()
	if err != nil {
		return chat.Message{}, fmt.Errorf("read message: %w: %w", ErrUnavailable, err)
	}
	es := readEntries(xs)
	if len(es) == 0 {
		return chat.Message{}, ErrNoSuchMessage
	}
	m, err := es[0].decode(room)
	if err != nil || m.Op != "" {
		return chat.Message{}, ErrNoSuchMessage
	}
	ms, err := b.applyEdits(ctx, room, []chat.Message{m}, true)
	if err != nil {
		return chat.Message{}, err
	}
	return ms[0], nil
}
