//go:build darwin || linux || openbsd

package fanout

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// writev is one writev call on a socket's file descriptor, kept by its
// writer goroutine so a write allocates nothing (fn is bound once).
type writev struct {
	bufs [][]byte
	wait bool
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newWritev() *writev {
	w := &writev{}
	w.fn = w.do
	return w
}

// write writes bufs with one writev. Without wait it never waits: a full
// socket gives a short write or an error for which wouldBlock holds. With
// wait, a full socket is waited on (through the runtime's poller, bounded
// by conn's write deadline) until it takes at least one byte. conn is
// rc's connection.
func (w *writev) write(_ net.Conn, rc syscall.RawConn, bufs [][]byte, wait bool) (int, error) {
	w.bufs, w.wait, w.n, w.err = bufs, wait, 0, nil
	err := rc.Write(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.bufs, w.err = nil, nil
	return n, err
}

// do runs in rc.Write: returning true ends the call, false waits for the
// socket to be writable and runs do again.
func (w *writev) do(fd uintptr) bool {
	for {
		n, err := unix.Writev(int(fd), w.bufs)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && w.wait:
			return false
		}
		w.n, w.err = max(n, 0), err
		return true
	}
}

// wouldBlock reports whether a non-blocking write failed because the socket
// is full.
func wouldBlock(err error) bool { return errors.Is(err, unix.EAGAIN) }
