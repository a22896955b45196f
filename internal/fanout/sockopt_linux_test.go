package fanout

import (
	"errors"
	"syscall"
)

const (
	soRcvbuf = syscall.SO_RCVBUF
	soSndbuf = syscall.SO_SNDBUF
)

// setBuf sets a socket buffer size.
func setBuf(rc syscall.RawConn, opt, size int) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size)
	})
	return errors.Join(err, serr)
}

// peeks says whether a closed peer can be noticed without a write.
const peeks = true
