package presence

import "sync/atomic"

// Stats are the presence counters of this instance since start.
type Stats struct {
	Arrivals   int64 `json:"arrivals"`   // Arrive calls (streams started)
	Departures int64 `json:"departures"` // Depart calls (streams ended)
	Coalesced  int64 `json:"coalesced"`  // departures cancelled by an arrival within the grace
	Joins      int64 `json:"joins"`      // joins this instance announced
	Leaves     int64 `json:"leaves"`     // leaves this instance announced (sweeps included)
	Swept      int64 `json:"swept"`      // leaves announced by this instance's sweeps (dead instances' people)
	Sweeps     int64 `json:"sweeps"`     // sweeps run
	Refreshes  int64 `json:"refreshes"`  // refresh rounds completed (every Refresh)
	Errors     int64 `json:"errors"`     // failed Redis operations (retried) and calls ignored as invalid
}

// counters are the live Stats.
type counters struct {
	arrivals, departures, coalesced, joins, leaves, swept, sweeps, refreshes, errors atomic.Int64
}

// Stats returns the presence counters.
func (p *Presence) Stats() Stats {
	c := &p.stats
	return Stats{
		Arrivals: c.arrivals.Load(), Departures: c.departures.Load(), Coalesced: c.coalesced.Load(),
		Joins: c.joins.Load(), Leaves: c.leaves.Load(), Swept: c.swept.Load(), Sweeps: c.sweeps.Load(),
		Refreshes: c.refreshes.Load(), Errors: c.errors.Load(),
	}
}
