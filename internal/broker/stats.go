package broker

import "sync/atomic"

// Stats are the broker's counters since start.
type Stats struct {
	Delivered    int64 `json:"delivered"`     // messages handed to the sink
	Malformed    int64 `json:"malformed"`     // payloads and history entries skipped as not a valid message
	Duplicates   int64 `json:"duplicates"`    // live payloads already delivered (by a gap fill)
	Gaps         int64 `json:"gaps"`          // sequence jumps seen on the live channel
	Fills        int64 `json:"fills"`         // gap fills that read history
	FillFailures int64 `json:"fill_failures"` // gap fills that failed (the subscription is then re-established)
	Filled       int64 `json:"filled"`        // messages delivered by gap fills
	Resubscribes int64 `json:"resubscribes"`  // subscriptions ended and re-established
	Panics       int64 `json:"panics"`        // recovered panics in the subscription loop
	Signals      int64 `json:"signals"`       // presence and typing signals handed to the sink
}

// counters are the live Stats.
type counters struct {
	delivered, malformed, duplicates, gaps, fills, fillFailures, filled, resubscribes, panics, signals atomic.Int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	c := &b.stats
	return Stats{
		Delivered: c.delivered.Load(), Malformed: c.malformed.Load(), Duplicates: c.duplicates.Load(),
		Gaps: c.gaps.Load(), Fills: c.fills.Load(), FillFailures: c.fillFailures.Load(), Filled: c.filled.Load(),
		Resubscribes: c.resubscribes.Load(), Panics: c.panics.Load(), Signals: c.signals.Load(),
	}
}
