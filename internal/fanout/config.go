package fanout

import (
	"runtime"
	"time"
)

// Config is the hub's tuning. A zero field takes the default named in its
// comment.
type Config struct {
	QueueEvents       int           // events accepted but not yet written, per subscriber, before eviction as slow (256)
	QueueBytes        int           // bytes likewise (1 MiB); an empty backlog still takes one larger event
	MaxStreams        int           // open streams per process (1<<20)
	StreamsPerSession int           // open streams per session (unlimited)
	Heartbeat         time.Duration // interval of Ping (15 s)
	WriteTimeout      time.Duration // a stream with bytes pending and no byte written for this long is closed as stalled (10 s)
	Writers           int           // shared writer goroutines for pooled subscribers (GOMAXPROCS)

	Ping       *Event                     // the heartbeat event (": ping\n\n")
	Disconnect func(Reason) *Event        // the last event for a told reason (none)
	Status     func(degraded bool) *Event // the status event sent by SetDegraded (none)

	// Closed, if set, is called once per stream after it ended and was
	// released, with its summary (for the log and metrics). It must not
	// block.
	Closed func(Closed)

	// Latency, if set, is called after each write to a stream that
	// carried timed events (Event.Born), with the time from the oldest of
	// them being born to the end of the write: publish → write, the
	// latency a client sees, less the network. It must not block.
	Latency func(time.Duration)
}

// Closed is the summary of a stream that ended.
type Closed struct {
	Rooms    []string
	Mode     Mode
	Reason   Reason // ReasonNone: cancelled before it was served
	Duration time.Duration
	Events   int64 // events written from its queue (live events, heartbeats, status)
	Bytes    int64 // their bytes
	Replayed int64 // events the stream's handler wrote before the hub took over (NoteReplayed)
}

// Defaults and fixed tuning, each with the reason for its value.
const (
	// Enough for a burst of a busy room; beyond it a client resumes from
	// history more cheaply than it is buffered here.
	defaultQueueEvents = 256
	// What Centrifuge allows a client by default.
	defaultQueueBytes = 1 << 20
	// "No limit" in practice; the registry grows with actual use.
	defaultMaxStreams = 1 << 20
	// Well inside nginx's default proxy_read_timeout of 60 s.
	defaultHeartbeat = 15 * time.Second
	// A peer that takes no byte for this long is gone or hopeless.
	defaultWriteTimeout = 10 * time.Second

	// Goroutine mode: bytes written under one write deadline, so the
	// deadline measures progress, not the size of a burst.
	chunkSize = 16 << 10
	// IOV_MAX on Linux and the BSDs: the most buffers one writev takes.
	maxIovecs = 1024
	// Goroutine mode: the longest the last (disconnect) event may take;
	// it is a courtesy and must not hold up a shutdown.
	farewellTimeout = 250 * time.Millisecond
	// Backing arrays longer than this, grown by a burst, are dropped when
	// emptied instead of being kept for the stream's lifetime.
	keepCap = 256
	// Likewise for the buffer of a pooled stream's composite id lines, in
	// bytes: those of keepCap events of a stream of a few rooms.
	keepLineBytes = 16 << 10
)

func (c Config) withDefaults() Config {
	if c.QueueEvents <= 0 {
		c.QueueEvents = defaultQueueEvents
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = defaultQueueBytes
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = defaultMaxStreams
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = defaultHeartbeat
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.Writers <= 0 {
		c.Writers = runtime.GOMAXPROCS(0)
	}
	if c.Ping == nil {
		c.Ping = &Event{Wire: []byte(": ping\n\n")}
	}
	return c
}
