package fanout

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Attach gives a Pooled subscriber its connection, hijacked from net/http
// after the handler wrote the response headers and the replay on it
// (flushed: nothing may be left in a bufio.Writer), and handed over the
// replay's position (SetPosition). From now on the hub
// owns conn: it writes, and it closes it when the stream ends. Attach
// clears conn's read and write deadlines; the hub sets its own.
//
// conn must be a socket (implement syscall.Conn: *net.TCPConn,
// *net.UnixConn), since the shared writers write its file descriptor
// without blocking. Otherwise Attach returns an error and does not take
// conn; so it does for a Goroutine subscriber or a second Attach.
func (s *Subscriber) Attach(conn net.Conn) error {
	if s.mode != Pooled {
		return errors.New("attach: not a pooled subscriber")
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("attach: a %T is not a socket the hub can write without blocking", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	s.mu.Lock()
	if s.conn != nil {
		s.mu.Unlock()
		return errors.New("attach: already attached")
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("attach: %w", err)
	}
	if s.closed { // while the handler wrote the replay
		s.conn, s.rc = conn, rc
		s.state = scheduled // the write token, to finish it at once
		s.mu.Unlock()
		s.hub.finish(s, newWritev())
		return nil
	}
	s.setTarget(conn) // before a writer can hand s to a drain goroutine, which arms it
	s.conn, s.rc = conn, rc
	if len(s.q.evs) > 0 {
		s.state = scheduled
		s.hub.runq.push(s)
	}
	s.mu.Unlock()
	return nil
}

// finish ends a pooled stream whose write token the caller holds: where no
// event is half written, it tells the client why with a non-blocking write
// (a disconnect event that does not fit is cut short by the close, and
// EventSource drops an unfinished event), then removes s and closes the
// connection. What is still queued is not written: the client resumes from
// history.
func (h *Hub) finish(s *Subscriber, wv *writev) {
	s.setTarget(nil) // no interrupt may land on the farewell
	s.mu.Lock()
	reason := s.reason
	s.q.reset()
	s.mu.Unlock()
	if fw := h.farewell[reason]; fw != nil && !s.pending.half() {
		s.conn.SetWriteDeadline(time.Time{}) // an interrupt's deadline would fail the write
		wv.write(s.conn, s.rc, [][]byte{fw.Wire}, false)
	}
	// Removed first, so that a client told to reconnect finds its slot
	// free (StreamsPerSession) by the time it sees the end of the stream.
	h.remove(s)
	s.conn.Close()
	s.pending.reset()
}

// pending is what the holder of a pooled subscriber's write token took
// from its queue and has not yet written: the events' wires, the first
// perhaps partly written. An event of a stream of several rooms is two
// buffers, its composite id line (kept in lines) and the rest of its wire,
// and counts as one event throughout: it is complete once both are
// written, and half written from its first byte to its last.
type pending struct {
	bufs   [][]byte // bufs[head:] are unwritten; bufs[head] is resliced past what was written
	ends   []bool   // ends[i]: bufs[i] is the last buffer of its event
	head   int
	off    int    // bytes of the event at head already written, in all its buffers
	events int    // events completed since the last written call
	bytes  int    // bytes written since the last written call, less the id lines' corrections
	lines  []byte // the composite id lines in bufs, back to back
	born   int64  // the oldest Event.Born among the unwritten events, 0 if none is timed
}

// add appends ev as pos writes it: on a stream of several rooms, a
// message event's composite id line (recorded in pos) and the rest of it;
// otherwise its own wire, and pos, which nobody reads any more, is left
// as it is. It allocates only to grow bufs, ends and lines, which are
// reused.
//
// The queue counted len(ev.Wire) for ev; the bytes written differ by the
// length of a composite id line, and the difference is reported with the
// bytes written, so that the queue's count stays what is accepted and not
// written, and returns to 0 once everything is.
func (p *pending) add(ev *Event, pos *Position) {
	p.born = earlier(p.born, ev)
	if !pos.multi() || !ev.hasIDLine() {
		p.bufs = append(p.bufs, ev.Wire)
		p.ends = append(p.ends, true)
		return
	}
	start := len(p.lines)
	p.lines = pos.appendIDLine(p.lines, ev)
	line := p.lines[start:len(p.lines):len(p.lines)]
	p.bufs = append(p.bufs, line, ev.Wire[ev.IDLen:])
	p.ends = append(p.ends, false, true)
	p.bytes += ev.IDLen - len(line)
}

func (p *pending) empty() bool { return p.head == len(p.bufs) }

// half reports whether an event is partly written (its id line counts):
// nothing else may be written on the connection then, or the client would
// see garbage.
func (p *pending) half() bool { return p.off > 0 }

// next returns the unwritten buffers for one writev (at most maxIovecs)
// and their total size.
func (p *pending) next() ([][]byte, int) {
	bufs := p.bufs[p.head:min(len(p.bufs), p.head+maxIovecs)]
	size := 0
	for _, b := range bufs {
		size += len(b)
	}
	return bufs, size
}

// advance records that n bytes of the buffers from next were written.
func (p *pending) advance(n int) {
	p.bytes += n
	for n > 0 {
		rest := len(p.bufs[p.head]) // what is unwritten of it
		if n < rest {
			p.bufs[p.head] = p.bufs[p.head][n:]
			p.off += n
			return
		}
		n -= rest
		p.off += rest
		if p.ends[p.head] {
			p.off = 0
			p.events++
		}
		p.bufs[p.head] = nil
		p.head++
	}
	if p.empty() {
		// Nothing refers to lines any more: it is reused from its start.
		p.bufs, p.ends, p.lines, p.head = p.bufs[:0], p.ends[:0], p.lines[:0], 0
		if cap(p.bufs) > keepCap {
			p.bufs, p.ends = nil, nil
		}
		if cap(p.lines) > keepLineBytes {
			p.lines = nil
		}
	}
}

// written returns, and forgets, what advance and add recorded since the
// last call.
func (p *pending) written() (events, bytes int) {
	events, bytes = p.events, p.bytes
	p.events, p.bytes = 0, 0
	return events, bytes
}

// doneBorn returns, and forgets, the oldest birth time of the events
// written, once everything pending is written; otherwise 0.
func (p *pending) doneBorn() int64 {
	if !p.empty() {
		return 0
	}
	born := p.born
	p.born = 0
	return born
}

func (p *pending) reset() { *p = pending{} }
