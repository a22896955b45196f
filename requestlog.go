package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"chatroom/internal/fanout"
)

// logRequests logs one line per request once it is answered: method, route
// pattern (never the raw path or query, which carry search text), status,
// duration, bytes written and a request ID, also sent back as X-Request-ID
// (a trusted proxy's X-Request-ID is kept, so one ID follows the request
// through both logs). Never message text, cookies or passwords. A stream
// served by the hub's writers (hijacked) is logged when it is handed over;
// its end is the "stream closed" line.
func logRequests(next http.Handler, log *slog.Logger, proxies proxyTrust) http.Handler {
	var prefix [4]byte
	rand.Read(prefix[:])
	instance := hex.EncodeToString(prefix[:])
	var seq atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 || !proxies.trusts(remoteAddr(r)) || !printable(id) {
			id = instance + "-" + strconv.FormatUint(seq.Add(1), 36)
		}
		w.Header().Set("X-Request-ID", id)
		lw := &loggedWriter{ResponseWriter: w}
		defer func() {
			status := lw.status
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			route := r.Pattern
			if route == "" {
				route = "(none)" // refused before routing (cross-origin), or no route
			}
			log.Info("request", "method", r.Method, "route", route, "status", status,
				"duration", time.Since(start).Round(time.Microsecond), "bytes", lw.bytes,
				"request_id", id, "hijacked", lw.hijacked)
		}()
		next.ServeHTTP(lw, r)
	})
}

// printable reports whether s is visible ASCII, as a request ID must be to
// be logged.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// loggedWriter records a response's status and size. It passes Flush,
// Hijack and the rest of http.ResponseController through (Unwrap).
type loggedWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (w *loggedWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *loggedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to a pooled stream, which writes its own
// "200 OK" head.
func (w *loggedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	c, rw, err := h.Hijack()
	if err == nil {
		w.hijacked = true
		w.status = http.StatusOK
	}
	return c, rw, err
}

func (w *loggedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logStreamClosed is the hub's Closed hook: one line per stream that ended.
func logStreamClosed(log *slog.Logger) func(fanout.Closed) {
	return func(c fanout.Closed) {
		log.Info("stream closed", "rooms", c.Rooms, "mode", c.Mode, "reason", c.Reason,
			"duration", c.Duration.Round(time.Millisecond), "events", c.Events+c.Replayed,
			"replayed", c.Replayed, "live_bytes", c.Bytes)
	}
}
