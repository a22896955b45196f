package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"chatroom/internal/sse"
)

// Tuning of stalled subscribers.
const (
	// stalledRcvBuf is a stalled subscriber's SO_RCVBUF (the kernel
	// doubles it), set before connecting so the TCP window stays that
	// small: the server's socket buffer fills after a few KiB, at once.
	stalledRcvBuf = 4096
	// stalledMSS clamps a stalled connection's segment size (TCP_MAXSEG)
	// to an Ethernet path's. Loopback's 64 KiB MSS makes Linux size the
	// server's send buffer for it at about 2.7 MiB, which a stalled stream
	// of large (about 22 KB/s) would take two minutes to fill, so the
	// server would never see it stall; with this MSS its writes block
	// after about 125 KB.
	stalledMSS = 1460
	// stalledReadBuf bounds what a stalled subscriber reads before it
	// stops: the response head and the prelude, little more.
	stalledReadBuf = 512
	// stalledDrain bounds the drain at the end that tells closed streams
	// (they end) from open ones (nothing more comes).
	stalledDrain = 3 * time.Second
)

// runStalled is a subscriber that stops reading: it opens the stream on a
// connection with a small receive buffer, reads the response head and the
// first retry: line, calls connected, and then reads nothing, and never
// reconnects, until drain is closed. Then it reads what the server left to
// find whether the server had closed the stream, and why (a disconnect
// event). It ends early if ctx does.
func (s *subscriber) runStalled(ctx context.Context, st *runState, connected func(), drain <-chan struct{}) {
	s.err = s.stall(ctx, connected, drain)
	if s.err != nil && !s.conned {
		st.subErr(s.err)
	}
}

func (s *subscriber) stall(ctx context.Context, connected func(), drain <-chan struct{}) error {
	req, err := streamRequest(ctx, s.sess, nil)
	if err != nil {
		return err
	}
	u, err := url.Parse(s.sess.target)
	if err != nil {
		return err
	}
	conn, err := dialSmallWindow(ctx, u.Host)
	if err != nil {
		return fmt.Errorf("stalled subscriber: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := req.Write(conn); err != nil {
		return fmt.Errorf("stalled subscriber: write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, stalledReadBuf), req)
	if err != nil {
		return fmt.Errorf("stalled subscriber: %w", err)
	}
	defer resp.Body.Close()
	if err := checkStream(resp); err != nil {
		return err
	}
	p := sse.NewReaderSize(resp.Body, stalledReadBuf, maxSSELine)
	for {
		it, err := p.Next()
		if err != nil {
			return fmt.Errorf("stalled subscriber: stream ended before its retry: line: %w", err)
		}
		if it.Kind == sse.KindRetry {
			break
		}
	}
	s.conned = true
	connected()

	select {
	case <-drain:
	case <-ctx.Done():
		return nil
	}
	if err := conn.SetReadDeadline(time.Now().Add(stalledDrain)); err != nil {
		return err
	}
	for {
		it, err := p.Next()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			s.closed = true
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded): // nothing more came: still open
			return nil
		case err != nil:
			return fmt.Errorf("stalled subscriber: drain: %w", err)
		}
		if it.Kind == sse.KindEvent && string(it.Type) == "disconnect" {
			reason := "?"
			if v, ok := jsonMember(it.Data, "reason"); ok && len(v) >= 2 && v[0] == '"' {
				reason = string(v[1 : len(v)-1])
			}
			s.told = reason
		}
	}
}

// dialSmallWindow connects to addr with a stalledRcvBuf receive buffer and
// a stalledMSS segment size.
func dialSmallWindow(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var err1, err2 error
		err := c.Control(func(fd uintptr) {
			err1 = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, stalledRcvBuf)
			err2 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, stalledMSS)
		})
		return errors.Join(err, err1, err2)
	}}
	return d.DialContext(ctx, "tcp", addr)
}
