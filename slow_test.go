package main

import (
	"bufio"
	"bytes"
	"chatroom/internal/chat"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// stalledStream is a subscriber that sends GET /stream and then never reads:
// a raw TCP connection with a tiny receive buffer, so the server's writes
// back up quickly.
type stalledStream struct {
	conn net.Conn
}

// openStalledStream opens /stream on c's server with c's session cookie
// and does not read the answer.
func openStalledStream(t testing.TB, c *chatClient, lastEventID string) *stalledStream {
	t.Helper()
	u, _ := url.Parse(c.base)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var req strings.Builder
	fmt.Fprintf(&req, "GET /stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", u.Host)
	for _, ck := range c.hc.Jar.Cookies(u) {
		fmt.Fprintf(&req, "Cookie: %s=%s\r\n", ck.Name, ck.Value)
	}
	if lastEventID != "" {
		fmt.Fprintf(&req, "Last-Event-ID: %s\r\n", lastEventID)
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	return &stalledStream{conn: conn}
}

// drain reads what the server sent until it closes the connection and
// returns the complete message events in it (like a browser, a half-received
// last event is dropped). It fails t unless the server closes the
// connection within timeout.
func (s *stalledStream) drain(t testing.TB, timeout time.Duration) (msgs []chat.Message, tail string) {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	raw, err := io.ReadAll(s.conn)
	if err != nil {
		t.Fatalf("the server did not close the stalled stream within %v: %v (read %d bytes)", timeout, err, len(raw))
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("stalled stream: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("stalled stream: status %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body) // ends early: the server cut the stream
	readSSE(bytes.NewReader(body), func(ev sseEvent) {
		switch ev.Event {
		case "message":
			m, err := decodeEvent(ev)
			if err != nil {
				t.Errorf("bad message event: %v", err)
			}
			msgs = append(msgs, m)
		case "disconnect":
			tail = ev.Data
		}
	})
	return msgs, tail
}

// TestSlowSubscriberEvicted: a subscriber that stops reading is evicted
// (counted in /readyz, its connection closed by the server) while another
// subscriber keeps receiving every message promptly; the server does not
// queue without bound for it; and when it reconnects with the last ID it
// got, it receives every message it missed.
func TestSlowSubscriberEvicted(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode,
				"-stream-buffer", "16", "-max-message", "40000", "-write-timeout", "4s",
				"-replay-max-bytes", "67108864") // its reconnect replays every missed message
			bob := login(t, srv.URL, "bob")
			normal := bob.openStream("", "")
			slowUser := login(t, srv.URL, "slow")
			start := pageLastID(t, slowUser) // where its stream starts, as a page's would
			slow := openStalledStream(t, slowUser, start)
			waitFor(t, 10*time.Second, "both streams open", func() bool { return serverCounters(t, srv).Streams == 2 })
			before := serverCounters(t, srv).Evictions

			// 38 KB per message: the stalled peer's socket buffers (a few
			// MB on loopback) fill after some dozens, then its queue of 16.
			pad := strings.Repeat("x", 38000)
			var posted []string
			var maxDelay time.Duration
			const maxPosts = 600
			evictedAt := -1
			for i := 0; i < maxPosts && (evictedAt < 0 || i < evictedAt+20); i++ {
				text := fmt.Sprintf("big-%s-%03d %s", mode, i, pad)
				start := time.Now()
				bob.post(text)
				posted = append(posted, text)
				got := normal.collectMessages(t, 1, 5*time.Second)
				if len(got) != 1 || got[0].Text != text {
					t.Fatalf("normal subscriber: message %d not delivered within 5 s (got %d)", i, len(got))
				}
				maxDelay = max(maxDelay, time.Since(start))
				if evictedAt < 0 && serverCounters(t, srv).Evictions > before {
					evictedAt = i
				}
			}
			if evictedAt < 0 {
				t.Fatalf("the stalled subscriber was not evicted after %d messages of %d bytes", maxPosts, len(pad))
			}
			t.Logf("%s: stalled subscriber evicted after %d messages; slowest post-to-delivery for the normal subscriber %v", mode, evictedAt+1, maxDelay)
			// Had the hub waited on the stalled stream, the normal one would
			// have waited for the write timeout (4 s) at least once.
			if maxDelay > 2*time.Second {
				t.Errorf("the normal subscriber waited %v for a message", maxDelay)
			}
			// The hub let go of it: only the normal stream is left.
			waitFor(t, 10*time.Second, "evicted stream removed", func() bool { return serverCounters(t, srv).Streams == 1 })

			got, tail := slow.drain(t, 10*time.Second)
			t.Logf("%s: stalled subscriber had %d complete messages when cut off (last event %q)", mode, len(got), tail)
			last := start
			if len(got) > 0 {
				last = got[len(got)-1].ID
			}
			again := slowUser.openStream(last, "")
			got = append(got, again.collectMessages(t, len(posted)-len(got), 10*time.Second)...)
			checkDelivery(t, "stalled subscriber after reconnect", got, posted, nil)
		})
	}
}

// waitFor polls cond until it holds, failing t after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStalledSubscriberClosed: a subscriber that stops reading while its
// queue is far within its bounds is closed as stalled (and counted as an
// eviction) once its pending bytes get none written for -write-timeout,
// while another subscriber receives every message.
func TestStalledSubscriberClosed(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			// Queue bounds of 100,000 events and 256 MiB: never reached
			// here, so the write timeout is the only way to close it.
			srv := startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode,
				"-stream-buffer", "100000", "-stream-buffer-bytes", "268435456",
				"-max-message", "40000", "-write-timeout", "2s")
			bob := login(t, srv.URL, "bob")
			normal := bob.openStream("", "")
			slow := openStalledStream(t, login(t, srv.URL, "stalled"), "")
			waitFor(t, 10*time.Second, "both streams open", func() bool { return serverCounters(t, srv).Streams == 2 })
			before := serverCounters(t, srv).Evictions

			// 300 messages of 38 KB (11 MB): more than the stalled peer's
			// socket buffers take (tcp_wmem's 4 MB at most, a 4 KiB
			// receive buffer), so bytes stay pending.
			pad := strings.Repeat("x", 38000)
			var posted []string
			for i := range 300 {
				text := fmt.Sprintf("stall-%s-%03d %s", mode, i, pad)
				bob.post(text)
				posted = append(posted, text)
			}
			waitFor(t, 20*time.Second, "the stalled stream closed and counted as an eviction", func() bool {
				c := serverCounters(t, srv)
				return c.Evictions == before+1 && c.Streams == 1
			})
			if !stalledClose.MatchString(srv.logs.String()) {
				t.Errorf("no stream closed with reason=stalled in the log:\n%s", clip(srv.logs.String(), 20000))
			}
			got := normal.collectMessages(t, len(posted), 20*time.Second)
			checkDelivery(t, "normal subscriber", got, posted, nil)
			slow.drain(t, 10*time.Second) // the server closed its connection
		})
	}
}

var stalledClose = regexp.MustCompile(`msg="stream closed".* reason=stalled`)
