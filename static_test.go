package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"chatroom/internal/redistest"
)

// Static assets: gzip when accepted (decoding to the embedded bytes), an
// ETag and a 304 for it, and nothing outside the static folder, however
// the path is spelled.
func TestStaticAssets(t *testing.T) {
	srv := startServer(t, redistest.Start(t).URL())
	want, _ := assets.ReadFile("static/app.js")
	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		tr := &http.Transport{DisableCompression: true} // see the raw encoding
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get("/static/app.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip request: %d, encoding %q, vary %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, want) || len(body) >= len(want) {
		t.Fatalf("gzip body: %d bytes decoding to %d (embedded %d), equal %v", len(body), len(plain), len(want), bytes.Equal(plain, want))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("ETag %q, type %q", etag, resp.Header.Get("Content-Type"))
	}
	resp, body = get("/static/app.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("revalidation: %d with %d bytes, want 304 and none", resp.StatusCode, len(body))
	}
	resp, body = get("/static/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, want) {
		t.Fatalf("gzip refused: %d, encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	for _, p := range []string{
		"/static/%2e%2e/templates/chat.html", "/static/%2E%2E/templates/chat.html", "/static/..%2ftemplates/chat.html",
		"/static/..%2Ftemplates%2Fchat.html", "/static/chat.html", "/static/", "/static/./app.js/",
	} {
		resp, body := get(p, nil)
		if resp.StatusCode == 200 || bytes.Contains(body, []byte("{{")) {
			t.Errorf("GET %s: %d (%d bytes), must not serve anything but the static files", p, resp.StatusCode, len(body))
		}
	}
}

// TestStaticTraversal: every spelling of a path that leaves static/ (dots
// encoded in either case, encoded slashes and backslashes, double
// encoding, a NUL) is answered 404 (or a redirect to a cleaned path that
// is itself 404), never a template or another embedded file. The request
// line is sent raw, so no client cleans it first.
func TestStaticTraversal(t *testing.T) {
	t.Parallel()
	srv := startServer(t, redistest.Start(t).URL())
	host := strings.TrimPrefix(srv.URL, "http://")
	get := func(target string) (int, string, string) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	for _, p := range []string{
		"/static/%2e%2e/templates/chat.html", "/static/%2E%2E/templates/chat.html", "/static/%2e%2E/templates/login.html",
		"/static/..%2ftemplates/chat.html", "/static/..%2Ftemplates%2Fchat.html", "/static/%2e%2e%2ftemplates%2fchat.html",
		"/static/%2e./templates/chat.html", "/static/.%2e/templates/chat.html", "/static/../templates/chat.html",
		"/static/..%5ctemplates%5cchat.html", "/static/..\\templates\\chat.html", "/static/%252e%252e/templates/chat.html",
		"/static/%2e%2e/%2e%2e/templates/chat.html", "/static/app.js/../../templates/chat.html", "/static//../templates/chat.html",
		"/static/app.js%00", "/static/app.js%2f", "/static/%2e/app.js/../../templates/chat.html", "/static/chat.html",
		"/static/templates/chat.html", "/%2e%2e/templates/chat.html", "/templates/chat.html", "/static/%2e%2e/handlers.go",
	} {
		status, loc, body := get(p)
		for hops := 0; status/100 == 3 && hops < 3; hops++ {
			if !strings.HasPrefix(loc, "/") {
				t.Fatalf("GET %s: redirect to %q", p, loc)
			}
			status, loc, body = get(loc)
		}
		if status != http.StatusNotFound || strings.Contains(body, "{{") {
			t.Errorf("GET %s: %d (%d bytes), want 404", p, status, len(body))
		}
	}
	if status, _, _ := get("/static/app.js"); status != 200 {
		t.Fatalf("the real file: %d", status)
	}
}
