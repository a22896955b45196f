//go:build linux

package redistest

import "syscall"

// sysProcAttr makes the kernel kill the server if the test binary dies
// (for example on a test timeout panic), so no redis-server outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
