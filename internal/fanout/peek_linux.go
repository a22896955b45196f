package fanout

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of a pooled connection has closed
// it, without blocking and without consuming data: a non-blocking MSG_PEEK
// that returns 0 bytes means end of stream. Nobody reads these connections
// (EventSource sends nothing after its request), so this is how a closed
// tab is noticed before a write fails.
func peerClosed(rc syscall.RawConn) bool {
	closed := false
	var buf [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err == unix.ECONNRESET
		return true // never wait for readability
	})
	return closed
}
