package presence

import "github.com/redis/go-redis/v9"

// syncScript brings one room's Redis state in line with one instance's
// local truth, announces what changed, and sweeps the dead. In order:
//
//	departs: remove this instance's holder of each uid; drop the dead
//	  holders of the uid; if no live holder is left and the uid is in the
//	  online set, remove it (and its name) and announce its leave.
//	claims: set this instance's liveness key (PX TTL); drop the uid's dead
//	  holders, add this instance's holder, set the uid's expiry to now+TTL
//	  (ZADD GT: never shorten another holder's), store the name; announce a
//	  join if the uid was not online (absent, or its expiry passed).
//	sweep: for each uid whose expiry passed, drop its dead holders; if a live
//	  one is left, its liveness bounds the entry (expiry = now + its PTTL);
//	  else remove it and announce its leave. The removal and the
//	  announcement are in this one script, so of several sweepers exactly
//	  one announces.
//	release: delete this instance's liveness key (it holds nobody here now).
//	Every room key gets PEXPIRE key TTL, so nothing outlives its writers.
//
// A holder is live while its instance's key chat:{R}:inst:<instance> exists;
// those keys are in the room's slot (same hash tag), built here from
// ARGV[7]. "now" is the server's TIME, the clock the liveness keys expire on.
//
// KEYS: online, names, holders, this instance's liveness key.
// ARGV: instance, TTL ms, key TTL ms, publish command, channel, room,
// liveness key prefix, sweep limit (0: no sweep), release ("1" or "0"),
// number of claims n, then n (uid, name) pairs, then the uids departing.
// Returns {joins announced, leaves announced, of which by the sweep}.
var syncScript = redis.NewScript(`
local online, names, holders, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local inst, ttl, keyttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local pub, channel, room, prefix = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local sweepLimit, release, nclaims = tonumber(ARGV[8]), ARGV[9] == '1', tonumber(ARGV[10])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function announce(kind, uid, name)
  redis.call(pub, channel, 'presence:{"kind":"' .. kind .. '","room":' .. cjson.encode(room) ..
    ',"user":' .. cjson.encode(name) .. ',"uid":' .. cjson.encode(uid) .. '}')
end

-- liveHolder removes uid's holders whose instance key is gone and returns
-- the longest remaining life (ms) of a live one, -1 when none is left.
local function liveHolder(uid)
  local best = -1
  for _, m in ipairs(redis.call('ZRANGEBYLEX', holders, '[' .. uid .. '\n', '(' .. uid .. '\11')) do
    local left = redis.call('PTTL', prefix .. string.sub(m, #uid + 2))
    if left == -2 then
      redis.call('ZREM', holders, m)
    else
      if left == -1 then left = ttl end
      if left > best then best = left end
    end
  end
  return best
end

local function drop(uid)
  local name = redis.call('HGET', names, uid) or uid
  redis.call('ZREM', online, uid)
  redis.call('HDEL', names, uid)
  announce('leave', uid, name)
end

local joins, leaves, swept = 0, 0, 0
local firstDepart = 11 + 2 * nclaims

for i = firstDepart, #ARGV do
  local uid = ARGV[i]
  redis.call('ZREM', holders, uid .. '\n' .. inst)
  if liveHolder(uid) < 0 and redis.call('ZSCORE', online, uid) then
    drop(uid)
    leaves = leaves + 1
  end
end

if nclaims > 0 then
  redis.call('SET', mine, '1', 'PX', ARGV[2])
end
local expiry = string.format('%.0f', now + ttl)
for i = 11, firstDepart - 1, 2 do
  local uid, name = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', online, uid)
  liveHolder(uid)
  redis.call('ZADD', holders, 0, uid .. '\n' .. inst)
  redis.call('ZADD', online, 'GT', expiry, uid)
  redis.call('HSET', names, uid, name)
  if not score or tonumber(score) <= now then
    announce('join', uid, name)
    joins = joins + 1
  end
end

if sweepLimit > 0 then
  local due = redis.call('ZRANGEBYSCORE', online, '-inf', string.format('%.0f', now), 'LIMIT', 0, sweepLimit)
  for _, uid in ipairs(due) do
    local left = liveHolder(uid)
    if left > 0 then
      redis.call('ZADD', online, string.format('%.0f', now + left), uid)
    else
      drop(uid)
      leaves = leaves + 1
      swept = swept + 1
    end
  end
end

if release then
  redis.call('DEL', mine)
end
redis.call('PEXPIRE', online, keyttl)
redis.call('PEXPIRE', names, keyttl)
redis.call('PEXPIRE', holders, keyttl)
return {joins, leaves, swept}
`)

// onlineScript reads a room's online list: the exact number of people whose
// expiry has not passed, and up to ARGV[1] of them with their names (in
// expiry order; the caller sorts by name). ARGV[2...] are uids this instance
// has locally: the script counts those Redis does not show as online (a
// claim still on its way), which the caller adds to the list itself.
//
// KEYS: online, names. Returns {count, local uids not online, uid1, name1, ...}.
var onlineScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local after = '(' .. string.format('%.0f', now)
local out = {redis.call('ZCOUNT', KEYS[1], after, '+inf'), 0}
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'LIMIT', 0, ARGV[1])) do
  out[#out + 1] = uid
  out[#out + 1] = redis.call('HGET', KEYS[2], uid) or uid
end
local missing = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not s or tonumber(s) <= now then
    missing = missing + 1
  end
end
out[2] = missing
return out
`)
