package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// connRefusalText is what a peer over its connection cap reads, as a 429,
// before the connection is closed (over plain HTTP; a TLS peer is just
// closed).
const connRefusalText = "too many open connections from your address; close some and try again\n"

const connRefusal = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 10\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" + connRefusalText // %d: its length

// addrConnLimit is a listener that lets each peer address hold at most max
// open connections to this instance, idle ones included, so one address
// cannot take every socket and goroutine. Trusted proxies are exempt: all
// their clients arrive through them (those clients are capped per address
// by the stream and post limits, which see through the proxy).
type addrConnLimit struct {
	net.Listener
	max      int
	exempt   proxyTrust
	tls      bool // the listener is wrapped in TLS: no plain-text answer
	log      *slog.Logger
	refused  atomic.Int64
	onRefuse func() // called for each refused connection (metrics); may be nil

	mu   sync.Mutex // guards open
	open map[netip.Addr]int
}

func newAddrConnLimit(ln net.Listener, max int, exempt proxyTrust, tls bool, log *slog.Logger, onRefuse func()) *addrConnLimit {
	return &addrConnLimit{Listener: ln, max: max, exempt: exempt, tls: tls, log: log, onRefuse: onRefuse, open: map[netip.Addr]int{}}
}

func (l *addrConnLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		a := ap.Addr().Unmap()
		if err != nil || l.exempt.trusts(a) {
			return c, nil
		}
		l.mu.Lock()
		full := l.open[a] >= l.max
		if !full {
			l.open[a]++
		}
		l.mu.Unlock()
		if full {
			if l.onRefuse != nil {
				l.onRefuse()
			}
			if l.refused.Add(1)%1000 == 1 {
				l.log.Warn("connection refused: too many from one address", "addr", a, "limit", l.max, "refused_total", l.refused.Load())
			}
			if !l.tls {
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				fmt.Fprintf(c, connRefusal, len(connRefusalText))
			}
			c.Close()
			continue
		}
		return &countedConn{TCPConn: tc, release: func() {
			l.mu.Lock()
			if l.open[a]--; l.open[a] <= 0 {
				delete(l.open, a)
			}
			l.mu.Unlock()
		}}, nil
	}
}

// countedConn is a connection counted against its address until it is
// closed. It stays a *net.TCPConn underneath (pooled streams write to the
// raw socket through SyscallConn).
type countedConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}
