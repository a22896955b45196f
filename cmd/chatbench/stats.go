package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"text/tabwriter"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values: the smallest value such that at least p% of the values are
// less than or equal to it. It returns 0 for no values.
func percentile(sorted []uint32, p float64) uint32 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// median returns the median of vs (mean of the two middle values for an
// even count), without modifying vs. NaN for no values.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// result is what one run of one scenario measured. Latencies are from the
// start of the POST to the moment the subscriber read the event.
type result struct {
	Scenario  string  `json:"scenario"`
	Run       int     `json:"run"` // 1-based; 0 in a median row
	Runs      int     `json:"runs,omitempty"`
	Instances int     `json:"instances"`
	Subs      int     `json:"subs"`
	Rooms     int     `json:"rooms,omitempty"` // 0: everyone in the default room
	Rate      float64 `json:"rate_msgs_per_s"`
	Senders   int     `json:"senders"`
	SendSec   float64 `json:"send_seconds"`

	Msgs       int            `json:"msgs"`        // messages scheduled
	Accepted   int            `json:"accepted"`    // POSTs answered 204
	PostErrors map[string]int `json:"post_errors"` // by status or error kind
	Expected   int64          `json:"expected_deliveries"`
	Deliveries int64          `json:"deliveries"` // unique (subscriber, message) pairs received
	Loss       int64          `json:"loss"`
	Dups       int64          `json:"dups"`
	// OrderErrs counts deliveries that break the order every subscriber
	// must see: a stream ID not above the previous one on that stream, a
	// message arriving with different IDs on different streams, or a
	// message arriving after one whose POST started after its POST was
	// answered (real-time order).
	OrderErrs int64 `json:"order_errors"`
	// SeqInversions counts deliveries whose sequence number is below one
	// already received on that stream: with overlapping POSTs (open loop)
	// this is legal, so it is informational only.
	SeqInversions int64 `json:"seq_inversions"`
	Foreign       int64 `json:"foreign_events"` // message events not from this run
	// WrongRoom counts this run's messages that reached a subscriber of
	// another room (or said another room in their JSON).
	WrongRoom   int64 `json:"wrong_room"`
	Reconnects  int64 `json:"reconnects"`
	Disconnects int64 `json:"disconnect_events"`
	Notices     int64 `json:"notice_events"`
	Statuses    int64 `json:"status_events"`
	FailedSubs  int   `json:"failed_subscribers"`
	// Stalled subscribers connected and then never read; StalledClosed of
	// them had been closed by the server when they were drained at the
	// end, some after telling why (StalledReasons: disconnect events by
	// reason). They count in Subs but in none of the figures above or
	// below.
	Stalled        int            `json:"stalled_subscribers"`
	StalledClosed  int            `json:"stalled_closed_by_server"`
	StalledReasons map[string]int `json:"stalled_disconnect_reasons,omitempty"`

	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// PostP50Ms and PostP99Ms are of the accepted POSTs, start → 204: the
	// part of the latency spent before the server answered (publishing).
	PostP50Ms float64 `json:"post_p50_ms"`
	PostP99Ms float64 `json:"post_p99_ms"`
	DelivS    float64 `json:"deliveries_per_s"`

	MaxSendLagMs float64 `json:"max_send_lag_ms"` // generator behind schedule
	ConnectSec   float64 `json:"connect_seconds"` // to connect all subscribers

	ServerCPUSec float64 `json:"server_cpu_s"`
	RedisCPUSec  float64 `json:"redis_cpu_s"`
	GenCPUSec    float64 `json:"generator_cpu_s"`
	// OtherCPUSec is CPU time the rest of the machine used meanwhile: a
	// large value means the figures were disturbed by other work.
	OtherCPUSec  float64 `json:"other_cpu_s"`
	WindowSec    float64 `json:"measure_window_s"`
	ServerUsPerD float64 `json:"server_us_per_delivery"`
	RedisUsPerD  float64 `json:"redis_us_per_delivery"`
	GenUsPerD    float64 `json:"generator_us_per_delivery"`

	RSSBeforeKiB    int64   `json:"server_rss_before_kib"`
	RSSConnectedKiB int64   `json:"server_rss_connected_kib"`
	RSSEndKiB       int64   `json:"server_rss_end_kib"`
	RSSPerSubKiB    float64 `json:"server_rss_per_sub_kib"`
	RedisRSSEndKiB  int64   `json:"redis_rss_end_kib"`

	// Storm is set for the storm scenario: connects and online lists.
	Storm *stormResult `json:"storm,omitempty"`

	Notes []string `json:"notes,omitempty"`
}

// problems lists what a check (smoke mode, -check) rejects.
func (r *result) problems() []string {
	var p []string
	if r.FailedSubs > 0 {
		p = append(p, fmt.Sprintf("%d subscribers failed", r.FailedSubs))
	}
	if r.Loss > 0 {
		p = append(p, fmt.Sprintf("%d lost deliveries", r.Loss))
	}
	if r.Dups > 0 {
		p = append(p, fmt.Sprintf("%d duplicate deliveries", r.Dups))
	}
	if r.OrderErrs > 0 {
		p = append(p, fmt.Sprintf("%d order errors", r.OrderErrs))
	}
	if r.WrongRoom > 0 {
		p = append(p, fmt.Sprintf("%d deliveries in the wrong room", r.WrongRoom))
	}
	if r.Storm != nil {
		p = append(p, r.Storm.problems(r.Subs)...)
	}
	if r.Msgs > 0 && r.Accepted < r.Msgs {
		p = append(p, fmt.Sprintf("%d of %d POSTs failed %v", r.Msgs-r.Accepted, r.Msgs, r.PostErrors))
	}
	return p
}

// mergeRuns summarises several runs of one scenario: the median of every
// measured figure, and the worst of every error count (the maximum; for
// stalled streams the server closed, the minimum), so a problem in one run
// is never hidden by the median.
func mergeRuns(rs []*result) *result {
	if len(rs) == 1 {
		m := *rs[0]
		m.Runs = 1
		return &m
	}
	m := *rs[0]
	m.Run = 0
	m.Runs = len(rs)
	m.Notes = nil
	med := func(get func(*result) float64) float64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = get(r)
		}
		return median(vs)
	}
	worst := func(get func(*result) int64) int64 {
		var w int64
		for _, r := range rs {
			w = max(w, get(r))
		}
		return w
	}
	m.Accepted = int(med(func(r *result) float64 { return float64(r.Accepted) }))
	m.Expected = int64(med(func(r *result) float64 { return float64(r.Expected) }))
	m.Deliveries = int64(med(func(r *result) float64 { return float64(r.Deliveries) }))
	m.PostErrors = map[string]int{}
	for _, r := range rs {
		for k, v := range r.PostErrors {
			m.PostErrors[k] = max(m.PostErrors[k], v)
		}
	}
	m.Loss = worst(func(r *result) int64 { return r.Loss })
	m.Dups = worst(func(r *result) int64 { return r.Dups })
	m.OrderErrs = worst(func(r *result) int64 { return r.OrderErrs })
	m.SeqInversions = worst(func(r *result) int64 { return r.SeqInversions })
	m.Foreign = worst(func(r *result) int64 { return r.Foreign })
	m.WrongRoom = worst(func(r *result) int64 { return r.WrongRoom })
	m.Reconnects = worst(func(r *result) int64 { return r.Reconnects })
	m.Disconnects = worst(func(r *result) int64 { return r.Disconnects })
	m.Notices = worst(func(r *result) int64 { return r.Notices })
	m.Statuses = worst(func(r *result) int64 { return r.Statuses })
	m.FailedSubs = int(worst(func(r *result) int64 { return int64(r.FailedSubs) }))
	m.StalledClosed = slices.MinFunc(rs, func(a, b *result) int { return a.StalledClosed - b.StalledClosed }).StalledClosed
	m.StalledReasons = nil

	m.P50Ms = med(func(r *result) float64 { return r.P50Ms })
	m.P90Ms = med(func(r *result) float64 { return r.P90Ms })
	m.P99Ms = med(func(r *result) float64 { return r.P99Ms })
	m.MaxMs = med(func(r *result) float64 { return r.MaxMs })
	m.PostP50Ms = med(func(r *result) float64 { return r.PostP50Ms })
	m.PostP99Ms = med(func(r *result) float64 { return r.PostP99Ms })
	m.DelivS = med(func(r *result) float64 { return r.DelivS })
	m.MaxSendLagMs = med(func(r *result) float64 { return r.MaxSendLagMs })
	m.ConnectSec = med(func(r *result) float64 { return r.ConnectSec })
	m.ServerCPUSec = med(func(r *result) float64 { return r.ServerCPUSec })
	m.RedisCPUSec = med(func(r *result) float64 { return r.RedisCPUSec })
	m.GenCPUSec = med(func(r *result) float64 { return r.GenCPUSec })
	m.OtherCPUSec = med(func(r *result) float64 { return r.OtherCPUSec })
	m.WindowSec = med(func(r *result) float64 { return r.WindowSec })
	m.ServerUsPerD = med(func(r *result) float64 { return r.ServerUsPerD })
	m.RedisUsPerD = med(func(r *result) float64 { return r.RedisUsPerD })
	m.GenUsPerD = med(func(r *result) float64 { return r.GenUsPerD })
	m.RSSBeforeKiB = int64(med(func(r *result) float64 { return float64(r.RSSBeforeKiB) }))
	m.RSSConnectedKiB = int64(med(func(r *result) float64 { return float64(r.RSSConnectedKiB) }))
	m.RSSEndKiB = int64(med(func(r *result) float64 { return float64(r.RSSEndKiB) }))
	m.RSSPerSubKiB = med(func(r *result) float64 { return r.RSSPerSubKiB })
	m.RedisRSSEndKiB = int64(med(func(r *result) float64 { return float64(r.RedisRSSEndKiB) }))
	m.Storm = mergeStorms(rs)
	return &m
}

// mergeStorms summarises the storm figures of several runs like
// mergeRuns: medians of the times, the worst of the counts.
func mergeStorms(rs []*result) *stormResult {
	var ss []*stormResult
	for _, r := range rs {
		if r.Storm != nil {
			ss = append(ss, r.Storm)
		}
	}
	if len(ss) == 0 {
		return nil
	}
	med := func(get func(*stormResult) float64) float64 {
		vs := make([]float64, len(ss))
		for i, s := range ss {
			vs[i] = get(s)
		}
		return median(vs)
	}
	worst := func(get func(*stormResult) int) int {
		w := get(ss[0])
		for _, s := range ss[1:] {
			w = max(w, get(s))
		}
		return w
	}
	m := &stormResult{
		Connected:      -worst(func(s *stormResult) int { return -s.Connected }), // the fewest
		ConnectSpanSec: med(func(s *stormResult) float64 { return s.ConnectSpanSec }),
		NoPresence:     worst(func(s *stormResult) int { return s.NoPresence }),
		PresenceSec:    med(func(s *stormResult) float64 { return s.PresenceSec }),
		Observers:      ss[0].Observers,
		PollSec:        med(func(s *stormResult) float64 { return s.PollSec }),
		PollWrong:      worst(func(s *stormResult) int { return s.PollWrong }),
		EventsSec:      med(func(s *stormResult) float64 { return s.EventsSec }),
		EventsWrong:    worst(func(s *stormResult) int { return s.EventsWrong }),
	}
	for _, s := range ss {
		m.BadEvents = max(m.BadEvents, s.BadEvents)
		m.ObserverReconnects = max(m.ObserverReconnects, s.ObserverReconnects)
		m.ObserverDisconnects = max(m.ObserverDisconnects, s.ObserverDisconnects)
		if m.FirstWrong == "" {
			m.FirstWrong = s.FirstWrong
		}
	}
	return m
}

// tableHeader names the columns of the result table.
var tableHeader = []string{
	"scenario", "run", "inst", "subs", "rooms", "rate/s", "msgs", "deliveries", "loss", "dups", "order", "x-room",
	"post err", "post p99", "p50 ms", "p90 ms", "p99 ms", "max ms", "deliv/s",
	"srv µs/dl", "redis µs/dl", "gen µs/dl", "RSS KiB/sub", "stalled/closed",
}

// writeTable prints results as an aligned table.
func writeTable(w io.Writer, rs []*result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for i, h := range tableHeader {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, h)
	}
	fmt.Fprint(tw, "\t\n")
	for _, r := range rs {
		cols := tableRow(r)
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprint(tw, "\t\n")
	}
	return tw.Flush()
}

func tableRow(r *result) []string {
	run := strconv.Itoa(r.Run)
	if r.Run == 0 {
		run = fmt.Sprintf("med%d", r.Runs)
	}
	postErr := 0
	for _, v := range r.PostErrors {
		postErr += v
	}
	stalled := "-"
	if r.Stalled > 0 {
		stalled = fmt.Sprintf("%d/%d", r.Stalled, r.StalledClosed)
	}
	idle := r.Msgs == 0
	lat := func(v float64) string {
		if idle || r.Deliveries == 0 {
			return "-"
		}
		return fmtFloat(v)
	}
	perD := func(v float64) string {
		if idle || r.Deliveries == 0 {
			return "-"
		}
		return fmtFloat(v)
	}
	return []string{
		r.Scenario, run, strconv.Itoa(r.Instances), strconv.Itoa(r.Subs), strconv.Itoa(max(r.Rooms, 1)), fmtFloat(r.Rate),
		strconv.Itoa(r.Msgs), strconv.FormatInt(r.Deliveries, 10), strconv.FormatInt(r.Loss, 10),
		strconv.FormatInt(r.Dups, 10), strconv.FormatInt(r.OrderErrs, 10), strconv.FormatInt(r.WrongRoom, 10), strconv.Itoa(postErr),
		lat(r.PostP99Ms), lat(r.P50Ms), lat(r.P90Ms), lat(r.P99Ms), lat(r.MaxMs), perD(r.DelivS),
		perD(r.ServerUsPerD), perD(r.RedisUsPerD), perD(r.GenUsPerD), fmtFloat(r.RSSPerSubKiB), stalled,
	}
}

// writeStorms prints a line of storm figures for each result that has them.
func writeStorms(w io.Writer, rs []*result) {
	for _, r := range rs {
		if sr := r.Storm; sr != nil {
			name := r.Scenario
			if r.Run == 0 {
				name += " (median)"
			}
			fmt.Fprintf(w, "  %s: %d of %d subscribers connected, the last %s s after the first open; presence events on all %s s later, %d never;\n"+
				"    online lists correct after the last connect: GET %s s (%d of %d rooms never), observers %s s (%d never;\n"+
				"    observers reconnected %d times, got %d disconnect events)\n",
				name, sr.Connected, r.Subs, fmtFloat(sr.ConnectSpanSec), fmtFloat(sr.PresenceSec), sr.NoPresence,
				fmtFloat(sr.PollSec), sr.PollWrong, sr.Observers, fmtFloat(sr.EventsSec), sr.EventsWrong,
				sr.ObserverReconnects, sr.ObserverDisconnects)
			if sr.FirstWrong != "" {
				fmt.Fprintf(w, "    first wrong list: %s\n", sr.FirstWrong)
			}
		}
	}
}

// fmtFloat prints 3 significant digits for small values, none for large.
func fmtFloat(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
