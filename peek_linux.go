package main

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of a taken-over connection has closed
// it, without blocking and without consuming data: a non-blocking MSG_PEEK
// that returns 0 bytes means end of stream. Nobody reads these connections
// (EventSource sends nothing after its request), so this is how a closed tab
// is noticed before the next write.
func peerClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err == syscall.ECONNRESET
		return true // never wait for readability
	})
	return closed
}
