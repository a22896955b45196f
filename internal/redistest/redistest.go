// Package redistest starts real redis-server processes (standalone, cluster
// and sentinel set-ups) on free loopback ports for tests.
//
// Every process runs in its own t.TempDir(), is stopped at t.Cleanup and, on
// Linux, is killed by the kernel if the test binary dies. All waits are
// bounded polls on a condition. The redis-server and redis-cli binaries are
// looked up in PATH; `make deps` installs them.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds how long a process may take to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// pollInterval is the pause between two checks of a condition.
	pollInterval = 20 * time.Millisecond
	// maxPortAttempts bounds the retries after a port turned out to be taken.
	maxPortAttempts = 20
)

// errPortInUse marks a start that failed because a port was already bound.
var errPortInUse = errors.New("port already in use")

// Option configures Start.
type Option func(*options)

type options struct {
	appendOnlyAlways bool
	args             []string
}

// AppendOnlyAlways turns on the append-only file with appendfsync always, so
// every acknowledged write survives Kill followed by Restart.
func AppendOnlyAlways() Option {
	return func(o *options) { o.appendOnlyAlways = true }
}

// Args appends extra redis-server command-line arguments, for example
// Args("--maxmemory", "10mb"). Later arguments override earlier ones.
func Args(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// Server is one redis-server process.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	logPath string
	// argsFor returns the command-line arguments for a given port.
	argsFor func(port int) ([]string, error)
	// pickPort returns a candidate free port.
	pickPort func() (int, error)

	mu     sync.Mutex
	port   int
	proc   *process
	client *redis.Client
}

// Start starts a standalone redis-server on a free 127.0.0.1 port, with
// `--save ""` and `--appendonly no` unless opts say otherwise, waits until it
// answers PING and stops it at t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	extra := []string{"--save", ""}
	if o.appendOnlyAlways {
		extra = append(extra, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		extra = append(extra, "--appendonly", "no")
	}
	extra = append(extra, o.args...)
	s, err := newServer(t, "redis", serverArgs(extra), freePort)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// serverArgs returns an argsFor function for a plain redis-server: port,
// bind address and dir first, then extra.
func serverArgs(extra []string) func(dir string) func(port int) ([]string, error) {
	return func(dir string) func(port int) ([]string, error) {
		return func(port int) ([]string, error) {
			args := []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--daemonize", "no",
			}
			return append(args, extra...), nil
		}
	}
}

// newServer creates a temp dir, starts the process and registers its
// cleanup. It returns an error instead of failing t so that callers can add
// context; it must still be called from the test goroutine (t.TempDir).
func newServer(t testing.TB, name string, mkArgs func(dir string) func(port int) ([]string, error), pickPort func() (int, error)) (*Server, error) {
	t.Helper()
	bin, err := lookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		t:        t,
		bin:      bin,
		dir:      dir,
		logPath:  filepath.Join(dir, name+".log"),
		argsFor:  mkArgs(dir),
		pickPort: pickPort,
	}
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		s.mu.Lock()
		c := s.client
		s.client = nil
		s.mu.Unlock()
		if c != nil {
			_ = c.Close()
		}
		s.Stop()
	})
	if err := s.launch(false); err != nil {
		return nil, err
	}
	s.client = redis.NewClient(&redis.Options{Addr: s.Addr()})
	return s, nil
}

// lookPath finds a Redis binary or explains how to install it.
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: run `make deps`", name)
	}
	return p, nil
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addr(s.port)
}

// Port returns the TCP port.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// URL returns "redis://127.0.0.1:port/0".
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Dir returns the server's working directory (its data and log live there).
func (s *Server) Dir() string { return s.dir }

// Client returns a client connected to the server, closed at t.Cleanup. It
// reconnects by itself after Kill and Restart.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// Kill sends SIGKILL and waits for the process to exit. It does nothing when
// the process is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Stop sends SIGTERM, waits for a graceful exit and sends SIGKILL if the
// process is still running after a timeout. It does nothing when the
// process is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil && !p.stop(stopTimeout) {
		s.t.Logf("redistest: %s did not exit %v after SIGTERM; killed it", s.Addr(), stopTimeout)
	}
}

// Pause stops the process (SIGSTOP) without closing its connections: to
// its peers it looks alive but answers nothing, like a server stuck on a
// slow disk. Resume lets it go on; cleanup resumes it before stopping it.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	s.t.Cleanup(s.Resume)
}

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(sig)
	}
}

// Restart stops the server if it is running (gracefully), then starts it
// again on the same port with the same directory and data, and waits until
// it answers PING. If the port is briefly taken by something else it
// retries until a deadline. It fails t on error, so it must be called from
// the test goroutine.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.launch(true); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// launch starts the process and waits for PING. With samePort it reuses
// s.port and retries on a bind conflict until a deadline; otherwise it picks
// a new port for every attempt.
func (s *Server) launch(samePort bool) error {
	deadline := time.Now().Add(readyTimeout)
	for attempt := 1; ; attempt++ {
		port := s.Port()
		if !samePort {
			var err error
			if port, err = s.pickPort(); err != nil {
				return err
			}
		}
		args, err := s.argsFor(port)
		if err != nil {
			return err
		}
		p, err := startProcess(s.bin, s.dir, args, s.logPath)
		if err != nil {
			return err
		}
		// Publish the process at once so that cleanup stops it whatever
		// happens next.
		s.mu.Lock()
		s.proc = p
		s.port = port
		s.mu.Unlock()
		err = p.waitReady(addr(port), readyTimeout)
		if err == nil {
			return nil
		}
		p.kill()
		if !errors.Is(err, errPortInUse) || attempt >= maxPortAttempts || time.Now().After(deadline) {
			return fmt.Errorf("%s %s: %w", s.bin, strings.Join(quoteArgs(args), " "), err)
		}
		if samePort {
			time.Sleep(5 * pollInterval)
		}
	}
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return q
}

// process is one run of a binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when Wait returned
	waitErr error         // valid once done is closed
	logPath string
	logFrom int64 // size of the log before this run
}

// startProcess starts bin in dir, appending its output to logPath.
func startProcess(bin, dir string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := logf.Stat()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logPath: logPath, logFrom: st.Size()}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// log returns what this run wrote to the log, at most the last 4 KiB.
func (p *process) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(b)) < p.logFrom {
		return ""
	}
	b = b[p.logFrom:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// waitReady polls until the server answers PING, the process exits or
// timeout passes. Each attempt first checks with a plain TCP connect, so
// that go-redis does not log a dial failure for every poll while the server
// is still starting, then sends PING through a fresh single-use client (a
// shared pool would trip its dial circuit breaker and back off for a
// second). A server still loading its data answers -LOADING and is polled
// again.
func (p *process) waitReady(address string, timeout time.Duration) error {
	var lastErr error
	err := poll(timeout, func() (bool, error) {
		if p.exited() {
			return false, p.exitError()
		}
		lastErr = ping(address)
		return lastErr == nil, nil
	})
	if err != nil && !p.exited() && lastErr != nil {
		err = fmt.Errorf("%w (last PING error: %v)\n%s", err, lastErr, p.log())
	}
	return err
}

func ping(address string) error {
	conn, err := net.DialTimeout("tcp", address, 500*time.Millisecond)
	if err != nil {
		return err
	}
	conn.Close()
	c := redis.NewClient(&redis.Options{
		Addr:            address,
		DialTimeout:     500 * time.Millisecond,
		DialerRetries:   1,
		ReadTimeout:     500 * time.Millisecond,
		WriteTimeout:    500 * time.Millisecond,
		MaxRetries:      -1,
		PoolSize:        1,
		DisableIdentity: true,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// exitError describes an early exit; it wraps errPortInUse for a bind
// conflict.
func (p *process) exitError() error {
	out := p.log()
	if strings.Contains(out, "Address already in use") {
		return fmt.Errorf("%w: exited early (%v):\n%s", errPortInUse, p.waitErr, out)
	}
	return fmt.Errorf("exited early (%v):\n%s", p.waitErr, out)
}

// kill sends SIGKILL and waits for the exit.
func (p *process) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// stop sends SIGTERM and waits up to timeout, then kills. It reports
// whether the process exited on its own.
func (p *process) stop(timeout time.Duration) bool {
	if p.exited() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		p.kill()
		return false
	}
}

// poll calls cond every pollInterval until it reports true, returns an
// error, or timeout passes.
func poll(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(pollInterval)
	}
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePort returns a port the kernel considers free on 127.0.0.1. Another
// process may take it before redis-server binds it; launch retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeClusterPort returns a port p such that p and its cluster bus port
// p+10000 are both free. Candidates lie in 12000..21999, so both ports stay
// below the usual ephemeral range (32768..60999) used by outgoing
// connections.
func freeClusterPort() (int, error) {
	for range 200 {
		p := 12000 + rand.IntN(10000)
		l1, err := net.Listen("tcp", addr(p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", addr(p+10000))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair (p, p+10000) found")
}
