//go:build !(darwin || linux || openbsd)

package fanout

import (
	"errors"
	"net"
	"syscall"
)

// writev stands in for the writev system call where golang.org/x/sys has
// none: the shared writers never write (every write looks like a full
// socket), so each pooled stream that has something to write does so from
// its drain goroutine, through net.Buffers, and is told stalled only when a
// whole write makes no progress.
type writev struct{}

func newWritev() *writev { return &writev{} }

var errWouldBlock = errors.New("no non-blocking writev on this platform")

func (w *writev) write(conn net.Conn, _ syscall.RawConn, bufs [][]byte, wait bool) (int, error) {
	if !wait {
		return 0, errWouldBlock
	}
	b := net.Buffers(bufs) // WriteTo consumes its copy of the slice header
	n, err := b.WriteTo(conn)
	return int(n), err
}

func wouldBlock(err error) bool { return errors.Is(err, errWouldBlock) }
