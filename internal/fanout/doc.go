// Package fanout delivers server-sent events to the streams open in this
// process: one event, encoded once, reaches every subscriber of a room.
//
// Broadcasting never blocks. Every subscriber has a backlog bounded in
// events and in bytes (Config.QueueEvents, Config.QueueBytes), counting all
// it accepted and has not yet written to its socket; an event that would
// exceed either bound evicts the subscriber as slow instead. An evicted
// client reconnects and resumes from history, so eviction costs it a
// reconnect, nothing more, and it cannot make anyone else wait.
//
// A stream is served in one of two modes:
//
//   - Goroutine: the HTTP handler's goroutine drains the subscriber
//     (Subscriber.Serve), as for HTTP/2, where a connection cannot be
//     taken over.
//   - Pooled: the handler hijacks the HTTP/1 connection, writes the headers
//     and the replay itself and hands the connection over
//     (Subscriber.Attach). A few shared writer goroutines then serve every
//     pooled stream with non-blocking writev calls, so an idle stream costs
//     a few hundred bytes instead of a goroutine and its buffers.
//
// A shared writer never waits on a socket: when a socket cannot take
// everything (a short write or EAGAIN), the subscriber moves to a goroutine
// of its own that waits for the socket to drain, and returns to the pool
// once it has caught up. A stream that has bytes pending and gets none of
// them written for Config.WriteTimeout is closed as stalled; a slow peer
// that keeps taking bytes is not.
package fanout
