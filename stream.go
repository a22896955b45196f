package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/fanout"
	"chatroom/internal/markup"
)

// streamConfig is the SSE endpoint's tuning.
type streamConfig struct {
	retry        time.Duration       // reconnection delay the browser is told to use
	pooled       bool                // serve plain HTTP/1 streams from the hub's shared writers
	replay       broker.ReplayLimits // most one (re)connection is replayed
	writeTimeout time.Duration       // a write that makes no progress this long ends the stream
}

// maxClockSkew is how far in the future a Last-Event-ID may lie and still be
// taken for a position of this history (a page rendered while Redis was
// away carries one taken from the clock); anything further is reported as
// unknown.
const maxClockSkew = time.Minute

// handleStream serves GET /stream: one live event stream of every room the
// user has joined (each event names its room), so a browser holds one
// connection however many rooms it is in.
//
// The order of a (re)connection is what makes it lossless, per room: the
// broker listens to the rooms first (Acquire), the hub subscription comes
// next (live messages start queueing), then the newest stored IDs are read,
// history is replayed up to them, and the hub drops queued messages the
// replay covered. The client's position comes from the Last-Event-ID
// header (a reconnecting EventSource) or, for a page's first connection,
// the last_event_id query parameter; the header wins. A room without a
// position starts with live messages (the tutorial's behaviour).
func handleStream(d deps) http.Handler {
	cfg := d.stream
	prelude := streamPrelude(cfg.retry)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := d.user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		if d.checkBanned(w, r, who.UID, d.sessions.proxies.clientIP(r)) {
			return // 403: the page shows the sentence and stops
		}
		if r.Method == http.MethodHead { // headers only: no subscription, no body
			sseHeaders(w.Header())
			w.WriteHeader(http.StatusOK)
			return
		}
		unavailable := func(err error) {
			d.log.Warn("stream not opened", "err", err)
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; retrying shortly")
		}
		rooms, err := d.broker.Joined(r.Context(), who.UID, d.rooms.max)
		if err != nil {
			unavailable(err)
			return
		}
		var first bytes.Buffer // prelude and notices, written with the headers
		first.Write(prelude)
		from, err := startPositions(r)
		if err != nil {
			first.Write(noticeEvent(notice{Code: "bad-last-event-id",
				Text: "Ignoring a malformed last event ID; showing new messages from now on."}).Wire)
		}

		// Pooled serving writes to the raw socket: over TLS a write that
		// hits its deadline breaks the connection for good, so TLS and
		// HTTP/2 streams are served by their own goroutine.
		mode := fanout.Goroutine
		if cfg.pooled && r.ProtoMajor == 1 && r.TLS == nil {
			mode = fanout.Pooled
		}
		lease, err := d.broker.Acquire(r.Context(), rooms...)
		if err != nil {
			unavailable(err)
			return
		}
		for _, room := range rooms {
			d.presence.Arrive(room, who.UID, who.Name)
		}
		held := &streamHold{lease: lease, presence: d.presence, uid: who.UID}
		done := held.end
		s, err := d.hub.Subscribe(rooms, who.SID, mode, done)
		switch {
		case errors.Is(err, fanout.ErrSessionStreams):
			done()
			d.metrics.limit(limitStreamsSession)
			httpError(w, http.StatusTooManyRequests, err.Error())
			return
		case err != nil:
			done()
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		// The caps per login and per client address count every
		// instance's streams (in Redis); the hub's count above is this
		// instance's, after closing the session's streams whose peer left.
		addr := limitAddr(d.sessions.proxies.clientIP(r))
		slot, err := d.slots.acquire(r.Context(), who.SID, addr, d.hub.SessionStreams(who.SID)-1)
		if err != nil {
			s.Cancel()
			if errors.Is(err, fanout.ErrSessionStreams) || errors.Is(err, errAddrStreams) {
				kind := limitStreamsSession
				if errors.Is(err, errAddrStreams) {
					kind = limitStreamsAddr
				}
				d.metrics.limit(kind)
				w.Header().Set("Retry-After", "10")
				httpError(w, http.StatusTooManyRequests, err.Error())
				return
			}
			unavailable(err)
			return
		}
		held.setSlot(slot)

		pos, plans, err := planReplays(r, d.broker, rooms, from, cfg.replay, &first)
		if err != nil {
			// Without the replay, live messages would leave a gap.
			s.Cancel()
			unavailable(err)
			return
		}
		// During the replays, a room not replayed is already at its newest
		// (its client starts there); afterwards every room is.
		start := maps.Clone(pos)
		maps.Copy(start, from)
		for room, upto := range pos {
			s.SkipUpTo(room, upto)
		}
		position := fanout.NewPosition(rooms, start)

		out, err := openStream(w, mode, cfg.writeTimeout)
		if errors.Is(err, errGoneAtStart) {
			s.Cancel() // the client left before the response head was written
			return
		}
		if err != nil {
			d.log.Error("opening stream", "err", err)
			s.Cancel()
			httpError(w, http.StatusInternalServerError, "could not open the stream")
			return
		}
		err = out.write(first.Bytes())
		for _, plan := range plans {
			if err == nil {
				var n int
				n, err = replay(r, d.markup, plan, position, out)
				s.NoteReplayed(n)
			}
		}
		if err == nil {
			position = fanout.NewPosition(rooms, pos)
			err = out.write(presenceEvents(r, d, rooms))
		}
		if err != nil {
			// The client went away or stopped reading during the replay,
			// or Redis failed mid-replay: end the stream; the client
			// resumes from the last message it got.
			s.Cancel()
			out.close()
			return
		}
		if len(rooms) > 1 { // one room's events carry their own id line
			s.SetPosition(position)
		}
		if mode == fanout.Pooled {
			if err := s.Attach(out.conn); err != nil {
				d.log.Error("handing the stream to the writers", "err", err)
				s.Cancel()
				out.close()
			}
			return
		}
		s.Serve(r.Context(), out)
	})
}

// streamHold is what an open stream holds beyond the hub: the broker's
// interest in its rooms, and its person's presence in them. end drops both
// (the hub calls it once, and it never blocks).
type streamHold struct {
	lease    *broker.Lease
	presence presenceTracker
	uid      string

	mu    sync.Mutex // guards slot and ended: the stream may end before its places are recorded
	slot  func()     // gives back the stream's places under the caps (streamSlots)
	ended bool
}

func (h *streamHold) end() {
	h.lease.Release()
	for _, room := range h.lease.Rooms() {
		h.presence.Depart(room, h.uid)
	}
	h.mu.Lock()
	h.ended = true
	slot := h.slot
	h.mu.Unlock()
	if slot != nil {
		slot()
	}
}

// setSlot records how to give the stream's places back; a stream that has
// already ended gives them back at once.
func (h *streamHold) setSlot(release func()) {
	h.mu.Lock()
	ended := h.ended
	if !ended {
		h.slot = release
	}
	h.mu.Unlock()
	if ended {
		release()
	}
}

// startPositions returns the positions the client resumes from, per room:
// the Last-Event-ID header (a composite position this server sent), else
// the last_event_id query parameter (a page's position; "0-0" entries are
// "before the first message"). It is empty when there is none, or it is
// malformed (err).
func startPositions(r *http.Request) (map[string]chat.ID, error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return map[string]chat.ID{}, nil
	}
	from, err := chat.ParsePositions(raw)
	if err != nil {
		return map[string]chat.ID{}, err
	}
	// A message ID of the old one-room form cannot be 0-0.
	if id, ok := from[chat.DefaultRoom]; ok && len(from) == 1 && id.IsZero() && r.Header.Get("Last-Event-ID") != "" {
		return map[string]chat.ID{}, fmt.Errorf("%w: 0-0 is not a message ID", chat.ErrPosition)
	}
	return from, nil
}

// planReplays reads the newest stored ID of every room (after subscribing:
// everything newer arrives live) and plans the replay of each room the
// client has a position in, adding the notices the client should see to
// first. upto holds each room's newest ID: where the client will be once
// the replays are written.
func planReplays(r *http.Request, b *broker.Broker, rooms []string, from map[string]chat.ID, lim broker.ReplayLimits, first *bytes.Buffer) (upto map[string]chat.ID, plans []*broker.ReplayPlan, err error) {
	upto, err = b.NewestMany(r.Context(), rooms)
	if err != nil {
		return nil, nil, err
	}
	resumed := 0
	for _, room := range rooms {
		if _, ok := from[room]; ok {
			resumed++
		}
	}
	if resumed > 1 { // one budget of bytes for the whole reconnection
		lim.Bytes = max(64<<10, lim.Bytes/resumed)
	}
	for _, room := range rooms {
		start, ok := from[room]
		if !ok {
			continue
		}
		newest := upto[room]
		if start.After(newest) {
			// A position newer than every stored message: a page rendered
			// from the clock while Redis was away, or an ID this history
			// never issued (forged, or from a Redis that lost data).
			// Everything after newest arrives live, so start there;
			// trusting the ID would hold back live messages until Redis
			// reaches it.
			if start.Ms > uint64(time.Now().Add(maxClockSkew).UnixMilli()) {
				first.Write(noticeEvent(notice{Code: "bad-last-event-id", Room: room,
					Text: "Ignoring an unknown last event ID; showing new messages from now on."}).Wire)
			}
			start = newest
			from[room] = newest
		}
		plan, err := b.PlanReplay(r.Context(), room, start, newest, lim)
		if err != nil {
			return nil, nil, err
		}
		if plan.Trimmed || plan.Capped {
			first.Write(noticeEvent(notice{Code: "history-trimmed", Before: plan.Start().String(), Room: room,
				Text: "Older messages you have not seen are not shown here."}).Wire)
		}
		plans = append(plans, plan)
	}
	return upto, plans, nil
}

// presenceEvents is the online list of every room, as a stream sends it
// when it starts. A room whose list cannot be read is left out: its join
// and leave events still come.
func presenceEvents(r *http.Request, d deps, rooms []string) []byte {
	var b []byte
	for _, room := range rooms {
		users, n, err := d.online.Online(r.Context(), room)
		if err != nil {
			d.log.Warn("online list not sent", "room", room, "err", err)
			continue
		}
		b = append(b, roomEvent(room, "presence", onlineList{Room: room, Users: nonNil(users), Count: n}).Wire...)
	}
	return b
}

// replay writes the plan's messages page by page, under the stream's
// position, and returns how many it wrote.
func replay(r *http.Request, md *markup.Renderer, plan *broker.ReplayPlan, pos *fanout.Position, out *streamOut) (int, error) {
	var buf []byte
	written := 0
	_, err := plan.Run(r.Context(), func(ms []chat.Message) error {
		buf = buf[:0]
		for _, m := range ms {
			buf = pos.AppendWire(buf, messageEvent(md, m))
		}
		if err := out.write(buf); err != nil {
			return err
		}
		written += len(ms)
		return nil
	})
	return written, err
}

// sseHeaders are sent before the first byte of every stream: no caching, no
// proxy buffering (nginx honours X-Accel-Buffering).
func sseHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// streamOut is where a stream's first bytes (headers, prelude, notices,
// replay) are written by the request goroutine, before the hub takes over.
type streamOut struct {
	fanout.StreamWriter
	conn    net.Conn // pooled: the connection hijacked from net/http
	timeout time.Duration
}

// openStream starts the response. A pooled stream's connection is taken
// over from net/http (http.ResponseController.Hijack) and the response head
// written by hand, with every header the middleware set; the request
// goroutine and its buffers are released once the hub has it.
func openStream(w http.ResponseWriter, mode fanout.Mode, timeout time.Duration) (*streamOut, error) {
	rc := http.NewResponseController(w)
	if mode == fanout.Goroutine {
		rc.SetReadDeadline(time.Time{}) // the server's ReadTimeout must not end the stream
		sseHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		return &streamOut{StreamWriter: fanout.ResponseStream(w), timeout: timeout}, nil
	}
	hdr := w.Header().Clone()
	sseHeaders(hdr)
	hdr.Set("Connection", "close") // the body ends when the connection does
	conn, _, err := rc.Hijack()
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{}) // clear the server's read and write deadlines
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	hdr.Write(&head)
	head.WriteString("\r\n")
	out := &streamOut{StreamWriter: connWriter{conn}, conn: conn, timeout: timeout}
	if err := out.write(head.Bytes()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %v", errGoneAtStart, err)
	}
	return out, nil
}

// errGoneAtStart: a pooled stream's connection, already taken from net/http,
// did not take the response head.
var errGoneAtStart = errors.New("the client went away before the stream started")

// write writes b in chunks, each under its own deadline: a client that keeps
// taking bytes is never cut off, one that takes none for the write timeout is.
func (o *streamOut) write(b []byte) error {
	const chunk = 16 << 10
	for len(b) > 0 {
		o.SetWriteDeadline(time.Now().Add(o.timeout))
		n, err := o.Write(b[:min(len(b), chunk)])
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return o.Flush()
}

// close ends a stream the hub never took.
func (o *streamOut) close() {
	if o.conn != nil {
		o.conn.Close()
	}
}

// connWriter is a pooled stream's connection before the hub has it.
type connWriter struct{ net.Conn }

func (connWriter) Flush() error { return nil }
