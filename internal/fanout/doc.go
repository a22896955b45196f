// Package fanout delivers server-sent events to the streams open in this
// process: one event, encoded once, reaches every subscriber of a room.
//
// A stream has any number of rooms (a browser holds one stream for every
// room it joined) and gets each event broadcast to one of them once, and
// each event for every stream (status, pings) once. A message event
// carries its room's id line; a stream of one room sends it as it is, and
// a stream of several rooms sends instead its composite position, one
// entry per room (Position), so that a reconnecting client resumes every
// room where it left off. The handler writes a stream's replay with that
// Position, marks each room's replay (Subscriber.SkipUpTo) and hands the
// Position over (Subscriber.SetPosition) with the stream. When a stream
// ends, however it ends, the hub calls the release given to Subscribe,
// once, after the stream has left the registry.
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
