package presence

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Run writes this instance's presence to Redis until ctx ends: claims and
// departures as they come (batched), and every Refresh a refresh and sweep
// of every room with local people. When ctx ends it stops, announcing
// nothing: clients reconnect to another instance, whose claim then finds
// them still online, and those who do not come back expire. Call Run once;
// it is the only goroutine that writes.
func (p *Presence) Run(ctx context.Context) {
	if !p.running.CompareAndSwap(false, true) {
		p.log.Error("presence: Run called while already running")
		return
	}
	defer p.running.Store(false)
	tick := time.NewTicker(p.cfg.Refresh)
	defer tick.Stop()
	// deadline fires at the earliest pending end of a grace period.
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()
	full := true // the first step also sends what arrived before Run
	for ctx.Err() == nil {
		p.step(ctx, full)
		full = false
		if at, ok := p.nextGrace(); ok {
			deadline.Reset(time.Until(at))
		} else {
			deadline.Stop()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			full = true
		case <-deadline.C:
		case <-p.wake:
		}
	}
}

// nextGrace returns the earliest pending end of a grace period.
func (p *Presence) nextGrace() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.graces) == 0 {
		return time.Time{}, false
	}
	return p.graces[0].at, true
}

// call is one run of syncScript: a chunk of one room's people.
type call struct {
	room       string
	claimUIDs  []string
	claimNames []string
	claims     []*person
	departUIDs []string
	departs    []*person
	sweep      bool // sweep the room's expired entries (a refresh)
	release    bool // this instance holds nobody in the room after this call
	cmd        *redis.Cmd
}

func (c *call) size() int { return len(c.claims) + len(c.departs) }

// step sends what the local truth needs: with full, every room's people
// (a refresh and a sweep), else only rooms with an unconfirmed claim or a
// due departure. Failures stay in the local state and are sent again at the
// next refresh at the latest.
func (p *Presence) step(ctx context.Context, full bool) {
	now := time.Now()
	var calls []*call
	for _, room := range p.roomsToSync(now, full) {
		calls = p.plan(calls, room, now, full)
	}
	for start := 0; start < len(calls); start += maxPipeline {
		p.send(ctx, calls[start:min(start+maxPipeline, len(calls))])
	}
	failed := 0
	var firstErr error
	for _, c := range calls {
		if err := p.apply(c, now); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if failed > 0 && ctx.Err() == nil {
		p.stats.errors.Add(int64(failed))
		p.log.Warn("presence: Redis writes failed; retrying at the next refresh",
			"failed", failed, "of", len(calls), "err", firstErr)
	}
	if full {
		p.stats.refreshes.Add(1)
	}
	p.lastStep.Store(now.UnixNano())
}

// roomsToSync turns the grace periods that ended by now into due
// departures and returns the rooms to send: all with full, else the dirty
// ones.
func (p *Presence) roomsToSync(now time.Time, full bool) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.graces) && !p.graces[n].at.After(now) {
		g := p.graces[n]
		if ps := p.rooms[g.room][g.uid]; ps != nil && ps.due(now) {
			p.dirty[g.room] = struct{}{}
		}
		n++
	}
	if p.graces = p.graces[n:]; len(p.graces) == 0 {
		p.graces = nil
	}
	var rooms []string
	if full {
		for room := range p.rooms {
			rooms = append(rooms, room)
		}
	} else {
		for room := range p.dirty {
			rooms = append(rooms, room)
		}
	}
	clear(p.dirty)
	return rooms
}

// plan appends to calls the scripts room needs: departures of people whose
// grace ended, claims of those Redis does not confirm yet (all of them with
// full: a refresh), in chunks of at most maxPerScript people.
func (p *Presence) plan(calls []*call, room string, now time.Time, full bool) []*call {
	p.mu.Lock()
	defer p.mu.Unlock()
	people := p.rooms[room]
	first := len(calls)
	c := &call{room: room}
	remaining := 0
	for uid, ps := range people {
		if c.size() == maxPerScript {
			calls = append(calls, c)
			c = &call{room: room}
		}
		switch {
		case ps.due(now):
			// Sent even if no claim was ever confirmed: the script only
			// removes what is there, and a claim may have landed unseen.
			c.departUIDs = append(c.departUIDs, uid)
			c.departs = append(c.departs, ps)
		case full || !ps.held:
			remaining++
			c.claimUIDs = append(c.claimUIDs, uid)
			c.claimNames = append(c.claimNames, ps.name)
			c.claims = append(c.claims, ps)
		default:
			remaining++
		}
	}
	if c.size() > 0 {
		calls = append(calls, c)
	}
	if len(calls) > first {
		calls[first].sweep = full
		calls[len(calls)-1].release = remaining == 0
	}
	return calls
}

// send runs one pipeline of calls.
func (p *Presence) send(ctx context.Context, batch []*call) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
	defer cancel()
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, c := range batch {
			c.cmd = syncScript.EvalSha(ctx, pipe, p.keys(c.room), p.args(c)...)
		}
		return nil
	})
	for _, c := range batch {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			// First use on this server, or it restarted: Run loads it.
			c.cmd = syncScript.Run(ctx, p.rdb, p.keys(c.room), p.args(c)...)
		}
	}
}

func (p *Presence) keys(room string) []string {
	return []string{onlineKey(room), namesKey(room), holdersKey(room), instKey(room, p.cfg.Instance)}
}

func (p *Presence) args(c *call) []any {
	sweep, release := 0, "0"
	if c.sweep {
		sweep = sweepLimit
	}
	if c.release {
		release = "1"
	}
	args := make([]any, 0, 10+2*len(c.claims)+len(c.departs))
	args = append(args, p.cfg.Instance, p.cfg.TTL.Milliseconds(), keyTTLFactor*p.cfg.TTL.Milliseconds(),
		p.pubCommand(), channel(c.room), c.room, instPrefix(c.room), sweep, release, len(c.claims))
	for i, uid := range c.claimUIDs {
		args = append(args, uid, c.claimNames[i])
	}
	for _, uid := range c.departUIDs {
		args = append(args, uid)
	}
	return args
}

func (p *Presence) pubCommand() string {
	if p.cfg.Sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// apply records the outcome of c: confirmed claims, written departures
// (the person is forgotten unless they came back meanwhile) and the
// announcements counted.
func (p *Presence) apply(c *call, now time.Time) error {
	res, err := c.cmd.Int64Slice()
	if err == nil && len(res) != 3 {
		err = errSyncReply
	}
	if err != nil {
		return err
	}
	p.stats.joins.Add(res[0])
	p.stats.leaves.Add(res[1])
	p.stats.swept.Add(res[2])
	if c.sweep {
		p.stats.sweeps.Add(1)
	}
	again := false
	p.mu.Lock()
	for _, ps := range c.claims {
		ps.held = true
	}
	people := p.rooms[c.room]
	for i, ps := range c.departs {
		ps.held = false
		uid := c.departUIDs[i]
		switch {
		case people[uid] != ps:
		case ps.due(now):
			delete(people, uid)
		default:
			// Back since the snapshot (a new stream, or a new grace):
			// the departure is written, so claim them again.
			again = true
		}
	}
	if people != nil && len(people) == 0 {
		delete(p.rooms, c.room)
	}
	if again {
		p.dirty[c.room] = struct{}{}
	}
	p.mu.Unlock()
	if again {
		p.signal()
	}
	return nil
}
