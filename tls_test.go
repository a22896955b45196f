package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// tlsClient returns a transport trusting the server's certificate, speaking
// HTTP/2 or only HTTP/1.1, whose sockets have a tiny receive buffer so that
// a client that pauses reading fills the server's socket at once.
func tlsTransport(t testing.TB, certFile string, h2 bool) *http.Transport {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	var protocols http.Protocols
	protocols.SetHTTP1(!h2)
	protocols.SetHTTP2(h2)
	return &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: roots}, Protocols: &protocols}
}

// TestTLSStreams (defect 4): over HTTPS, with HTTP/1.1 and HTTP/2 clients,
// a client that stops reading for a while (its socket full, the server's
// writes waiting) gets every message once it reads again, on the same
// stream; and a client that goes away is noticed at once, not at a
// heartbeat. (A *tls.Conn whose write hits a deadline is broken for good,
// so TLS streams are never served by the shared writers.)
func TestTLSStreams(t *testing.T) {
	rs := redistest.Start(t)
	cert, key := selfSignedCert(t, t.TempDir())
	srv := startServer(t, rs.URL(), "-tls-cert", cert, "-tls-key", key, "-rate-posts", "0",
		"-max-message", "40000", "-stream-buffer", "1000", "-stream-buffer-bytes", "67108864",
		"-heartbeat", "1h")
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			tr := tlsTransport(t, cert, proto == "HTTP/2")
			bob := newClient(t, srv.URL)
			bob.hc.Transport = tr
			if resp := bob.postForm("/login", map[string][]string{"user": {"bob"}}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d %s", resp.StatusCode, resp.body)
			}
			alice := newClient(t, srv.URL)
			alice.hc.Transport = tlsTransport(t, cert, proto == "HTTP/2")
			if resp := alice.postForm("/login", map[string][]string{"user": {"alice"}}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d %s", resp.StatusCode, resp.body)
			}
			pause := make(chan struct{})
			paused := alice.openStreamPaused("", "", pause) // reads nothing until pause closes
			if want := map[string]int{"HTTP/1.1": 1, "HTTP/2": 2}[proto]; paused.resp.ProtoMajor != want {
				t.Fatalf("stream over %s, want %s", paused.resp.Proto, proto)
			}
			// 60 messages of 30 KB: far more than the socket buffers hold
			// with the client not reading.
			var posted []string
			pad := strings.Repeat("y", 30000)
			for i := range 60 {
				text := fmt.Sprintf("tls-%s-%02d %s", proto, i, pad)
				bob.post(text)
				posted = append(posted, text)
			}
			close(pause) // read again
			got := paused.collectMessages(t, len(posted), 20*time.Second)
			bob.post("after-" + proto)
			got = append(got, paused.collectMessages(t, 1, 10*time.Second)...)
			checkDelivery(t, proto+" stream that paused", got, append(posted, "after-"+proto), nil)

			// Closing the client ends the server's stream at once.
			n := serverCounters(t, srv).Streams
			paused.Close()
			waitFor(t, 10*time.Second, "the closed stream to be noticed", func() bool { return serverCounters(t, srv).Streams == n-1 })
		})
	}
}
