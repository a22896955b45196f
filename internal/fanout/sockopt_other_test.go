//go:build !linux

package fanout

import "syscall"

const (
	soRcvbuf = 0
	soSndbuf = 0
)

// setBuf keeps the system's buffer sizes: the tests are written for Linux,
// where they run in CI, and are only expected to build elsewhere.
func setBuf(syscall.RawConn, int, int) error { return nil }

// peeks says whether a closed peer can be noticed without a write.
const peeks = false
