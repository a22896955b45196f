package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
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
