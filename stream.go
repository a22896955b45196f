package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// streamConfig is the SSE endpoint's tuning.
type streamConfig struct {
	retry        time.Duration // reconnection delay the browser is told to use
	takeover     bool          // serve HTTP/1 streams from the hub's writer pool
	replayMax    int64         // most messages replayed on one (re)connection
	writeTimeout time.Duration // a write that cannot finish in this time ends the stream
}

// handleStream serves GET /stream: the live event stream of the default room.
//
// The order of a (re)connection is what makes it lossless: subscribe to the
// hub first (live events start queueing), then read history after the
// client's last ID, send that, and drop queued live events the replay
// already covered. The client's last ID comes from the Last-Event-ID header
// (a reconnecting EventSource) or, for a page's first connection, the
// last_event_id query parameter; the header wins.
func handleStream(user func(*http.Request) (identity, bool), b *broker, h *hub, cfg streamConfig, log *slog.Logger) http.Handler {
	prelude := []byte("retry: " + strconv.FormatInt(cfg.retry.Milliseconds(), 10) + "\n: connected\n\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := user(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "you are not logged in: open / to log in")
			return
		}
		if r.Method == http.MethodHead { // headers only: no subscription, no body
			sseHeaders(w.Header())
			w.WriteHeader(http.StatusOK)
			return
		}
		var out bytes.Buffer
		out.Write(prelude)

		var last streamID
		raw := r.Header.Get("Last-Event-ID")
		if raw == "" {
			raw = r.URL.Query().Get("last_event_id")
		}
		if raw != "" {
			id, err := parseStreamID(raw)
			if err != nil {
				out.Write(controlEvent("notice", notice{Code: "bad-last-event-id",
					Text: "Ignoring a malformed last event ID; showing new messages from now on."}).wire)
			}
			last = id
		}

		pooled := cfg.takeover && r.ProtoMajor == 1
		s, err := h.subscribe(defaultRoom, who.SID, pooled)
		switch {
		case errors.Is(err, errSessionStreams):
			httpError(w, http.StatusTooManyRequests, err.Error())
			return
		case err != nil:
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		}

		// An ID newer than every stored message was not issued by this
		// history (forged, or from a Redis that lost data): trusting it
		// would hold back live messages until Redis reaches it. Read after
		// subscribing, so a message stored meanwhile counts as known.
		if !last.isZero() {
			if newest, err := b.newest(r.Context(), defaultRoom); err == nil && last.after(newest) {
				if !newest.isZero() { // an empty history knows no ID: nothing to say
					out.Write(controlEvent("notice", notice{Code: "bad-last-event-id",
						Text: "Ignoring an unknown last event ID; showing new messages from now on."}).wire)
				}
				last = streamID{}
			}
		}

		skip := last
		// Page through everything after last: MAXLEN ~ keeps somewhat more
		// than replayMax, and stopping early would lose the newest ones.
		for page, more := 0, !last.isZero(); more; page++ {
			msgs, trimmed, err := b.After(r.Context(), defaultRoom, skip, cfg.replayMax)
			if err != nil {
				// Without the replay, live messages would leave a gap.
				// End the stream after saying why; EventSource retries.
				log.Warn("stream replay failed", "err", err)
				s.close(reasonNone)
				h.remove(s)
				w.Header().Set("Retry-After", "2")
				httpError(w, http.StatusServiceUnavailable, "the chat store is unavailable; retrying shortly")
				return
			}
			if trimmed && page == 0 {
				out.Write(controlEvent("notice", notice{Code: "history-trimmed",
					Text: "Some older messages were removed from history before you could see them."}).wire)
			}
			for _, m := range msgs {
				out.Write(messageEvent(m.id, m.body).wire)
				skip = m.id
			}
			more = int64(len(msgs)) == cfg.replayMax
		}
		s.setSkip(skip)

		if pooled {
			serveTakenOver(w, s, h, out.Bytes(), cfg, log)
			return
		}
		serveGoroutine(w, r, s, h, out.Bytes(), cfg)
	})
}

// sseHeaders are sent before the first byte of every stream: no caching, no
// proxy buffering (nginx honours X-Accel-Buffering).
func sseHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// serveTakenOver takes the connection over from net/http, writes the headers
// and prelude itself and hands the connection to the hub's writer pool. The
// request goroutine and its buffers are then released.
func serveTakenOver(w http.ResponseWriter, s *subscriber, h *hub, prelude []byte, cfg streamConfig, log *slog.Logger) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		log.Error("taking over stream connection", "err", err)
		s.close(reasonNone)
		h.remove(s)
		httpError(w, http.StatusInternalServerError, "could not open the stream")
		return
	}
	hdr := make(http.Header, 5)
	sseHeaders(hdr)
	hdr.Set("Connection", "close") // the body ends when the connection does
	var head bytes.Buffer
	head.Grow(256 + len(prelude))
	head.WriteString("HTTP/1.1 200 OK\r\n")
	hdr.Write(&head)
	head.WriteString("\r\n")
	head.Write(prelude)
	conn.SetDeadline(time.Time{}) // clear the server's read deadline
	conn.SetWriteDeadline(time.Now().Add(cfg.writeTimeout))
	if _, err := conn.Write(head.Bytes()); err != nil {
		conn.Close()
		s.close(reasonClientGone)
		h.remove(s)
		return
	}
	s.attach(conn)
}

// serveGoroutine serves the stream from the request goroutine: used for
// HTTP/2 (whose streams cannot be taken over) and when takeover is off.
func serveGoroutine(w http.ResponseWriter, r *http.Request, s *subscriber, h *hub, prelude []byte, cfg streamConfig) {
	defer h.remove(s)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the server's ReadTimeout must not end the stream
	sseHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	write := func(bs ...[]byte) error {
		rc.SetWriteDeadline(time.Now().Add(cfg.writeTimeout))
		for _, b := range bs {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if err := write(prelude); err != nil {
		s.close(reasonClientGone)
		return
	}
	var batch [][]byte
	for {
		select {
		case <-r.Context().Done():
			s.close(reasonClientGone)
			return
		case <-s.notify:
		case <-s.done:
		}
		evs, closed, reason := s.take()
		batch = batch[:0]
		for _, ev := range evs {
			batch = append(batch, ev.wire)
		}
		if closed && reason.told() {
			batch = append(batch, disconnectEvent(reason).wire)
		}
		err := write(batch...)
		s.recycle(evs)
		if closed {
			return
		}
		if err != nil {
			s.close(reasonClientGone)
			return
		}
	}
}
