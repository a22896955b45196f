package fanout

// Stats are the hub's counters, for logs and metrics.
type Stats struct {
	Streams   int              `json:"streams"`   // open streams
	Rooms     int              `json:"rooms"`     // rooms with at least one open stream
	Goroutine int              `json:"goroutine"` // of them, in Goroutine mode
	Pooled    int              `json:"pooled"`    // of them, in Pooled mode
	Draining  int              `json:"draining"`  // pooled streams on a goroutine of their own, waiting for a full socket
	Delivered int64            `json:"delivered"` // events accepted into a subscriber's queue
	Evictions int64            `json:"evictions"` // streams closed because the client did not keep up: slow or stalled
	Closes    map[Reason]int64 `json:"closes"`    // streams ended, by reason (ReasonNone: cancelled)
}

// Stats returns the hub's counters now.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	st := Stats{
		Streams:   h.reg.total(),
		Rooms:     len(h.reg.rooms),
		Goroutine: h.reg.modes[Goroutine],
		Pooled:    h.reg.modes[Pooled],
	}
	h.mu.RUnlock()
	st.Draining = int(h.draining.Load())
	st.Delivered = h.delivered.Load()
	st.Closes = make(map[Reason]int64, numReasons)
	for r := range numReasons {
		st.Closes[r] = h.closes[r].Load()
	}
	st.Evictions = st.Closes[ReasonSlow] + st.Closes[ReasonStalled]
	return st
}
