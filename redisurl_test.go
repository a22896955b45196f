package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestRedisURLForms parses every supported URL form and refuses bad ones
// with a clear error, without connecting.
func TestRedisURLForms(t *testing.T) {
	tests := []struct {
		url, kind, err string
		sharded        bool
	}{
		{url: "redis://127.0.0.1:6379/0", kind: "single"},
		{url: "rediss://user:pw@127.0.0.1:6380/1", kind: "single"},
		{url: "unix:///run/redis.sock?db=2", kind: "single"},
		{url: "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster", kind: "sentinel"},
		{url: "rediss+sentinel://:pw@127.0.0.1:26379/mymaster/3", kind: "sentinel"},
		{url: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001", kind: "cluster", sharded: true},
		{url: "http://127.0.0.1:6379", err: `unsupported scheme "http"`},
		{url: "redis+sentinel://127.0.0.1:26379", err: "master-name"},
		{url: "redis+sentinel://127.0.0.1:26379/m/x", err: "bad database number"},
		{url: "redis+cluster://127.0.0.1", err: "needs a port"},
		{url: "redis://127.0.0.1:6379/notadb", err: "invalid database number"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, sharded, kind, err := newRedisClient(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if kind != tt.kind || sharded != tt.sharded {
				t.Fatalf("kind %s sharded %v, want %s %v", kind, sharded, tt.kind, tt.sharded)
			}
		})
	}
	if got := redactURL("redis://user:secret@host:1/0"); strings.Contains(got, "secret") {
		t.Fatalf("redactURL leaks the password: %s", got)
	}
}

// chatWorks logs in, streams and posts through a server on redisURL.
func chatWorks(t *testing.T, redisURL string) {
	t.Helper()
	srv := startServer(t, redisURL)
	alice := login(t, srv.URL, "alice")
	s := alice.openStream("", "")
	alice.post("over " + redisURL[:strings.Index(redisURL, ":")])
	if got := s.collectMessages(t, 1, 5*time.Second); len(got) != 1 {
		t.Fatalf("no message delivered through %s", redisURL)
	}
}

// TestRedisUnixSocket: REDIS_URL unix:///path/redis.sock.
func TestRedisUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redistest.Start(t, redistest.Args("--unixsocket", sock, "--unixsocketperm", "700"))
	chatWorks(t, "unix://"+sock)
}

// TestRedisTLS: REDIS_URL rediss:// to a redis-server speaking TLS (a
// self-signed certificate, so the test skips verification in the URL).
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSignedCert(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	redistest.Start(t, redistest.Args("--tls-port", strconv.Itoa(port), "--tls-cert-file", cert,
		"--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"))
	chatWorks(t, "rediss://127.0.0.1:"+strconv.Itoa(port)+"/0?skip_verify=true")
}

func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

// TestGoRedisLogLevels: go-redis's own warnings, such as a pub/sub message
// it dropped because our channel stayed full, reach the log as warnings;
// its dial failures during an outage stay at debug level (the server logs
// each failure once where it handles it).
func TestGoRedisLogLevels(t *testing.T) {
	var buf strings.Builder
	l := goRedisLog{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Printf(t.Context(), "redis: %v channel is full for %s (message is dropped)", "PubSub(chat)", time.Minute)
	l.Printf(t.Context(), "redis: discarding bad PubSub connection: dial tcp 127.0.0.1:1: connect: connection refused")
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "message is dropped") {
		t.Errorf("dropped message not logged as a warning: %q", out)
	}
	if strings.Contains(out, "connection refused") {
		t.Errorf("dial failure logged above debug: %q", out)
	}
}
