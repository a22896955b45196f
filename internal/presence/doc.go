// Package presence keeps who is online in each room, across every instance,
// in Redis with expiry, and announces joins and leaves on the room's channel.
//
// # Per person, not per tab
//
// A person is online in a room while at least one stream of theirs, on any
// instance, carries that room. Tabs, reconnects and reloads come and go all
// the time; the people looking at the member list only care about the
// person. So each instance keeps a local count of streams per (room, uid)
// and talks to Redis only when that count crosses zero, and Redis keeps,
// per person, the set of instances holding them.
//
// # Coalescing
//
//   - 0→1 streams on an instance claims the person for that instance, unless
//     it cancels a departure still in its grace period (then nothing is sent).
//   - 1→0 starts the grace period (Config.Grace). Only when it ends with the
//     count still 0 is the departure written: a reload, a reconnect or a move
//     to another instance within the grace is never a leave + join.
//   - A join is announced only when the person was not online on any
//     instance; a leave only when no live instance holds them any more. Both
//     are decided and published inside one Lua script, so the state change
//     and its announcement are atomic and happen once, whichever instances
//     race.
//
// # Keys (all with the room's hash tag: one script, one cluster slot)
//
//	chat:{R}:online        ZSET uid → expiry (ms, Redis server time)
//	chat:{R}:names         HASH uid → display name
//	chat:{R}:holders       ZSET score 0, members "uid\ninstance" (a lex range per uid)
//	chat:{R}:inst:<inst>   STRING, PX TTL: instance <inst> is alive and refreshing room R
//
// A holder whose instance key is gone is dead. The three room keys get a
// PEXPIRE of keyTTLFactor×TTL at every write, so a room whose instances all
// died vanishes by itself; a room whose people all left is empty and so has
// no keys at all (an instance deletes its liveness key when it holds nobody
// there any more).
//
// Announcements are published on the room's channel ("chat" for the default
// room, "chat:{R}" otherwise; SPUBLISH on a cluster) as "presence:" followed
// by {"kind":"join"|"leave","room":R,"user":name,"uid":uid}.
//
// # Time
//
// Expiry scores are compared with Redis's own clock (TIME inside the
// scripts), never an instance's: instances' clocks differ, and the liveness
// keys expire on the server's clock anyway, so both kinds of expiry run on
// the one clock of the master of the room's slot. (Redis 7 replicates
// scripts by their effects, so TIME is allowed in them.)
//
// # What a crash costs
//
// Every Refresh (TTL/4 by default) Run re-claims this instance's people
// (extending their expiry and its liveness key) and sweeps the room: an
// entry whose expiry passed and that no live instance holds is removed and
// its leave announced, once, by whichever surviving instance's script gets
// there first. An instance that dies without a word therefore disappears
// within TTL + Refresh (50 s with the defaults), and only from rooms where
// some other instance still has local people; elsewhere nobody is watching
// and the keys expire. A person whose instance died but who reconnects to
// another one before their expiry is neither left nor rejoined. Shutting
// down is a crash on purpose: Run announces nothing when its context ends,
// so clients moving to another instance do not flicker.
//
// Redis errors never lose local truth: the local counts stay, a claim or a
// departure that failed is sent again at the next refresh, and a write whose
// fate is unknown costs at most one TTL of a stale entry.
package presence
