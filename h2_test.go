package main

import (
	"net/http"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestHTTP2Stream: over HTTP/2 (here h2c, as behind a proxy speaking it)
// streams cannot be hijacked, so they are served by their own goroutine;
// messages and resume work the same.
func TestHTTP2Stream(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-h2c")
	alice := login(t, srv.URL, "alice")
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	alice.hc.Transport = &http.Transport{Protocols: &protocols}

	page := alice.get("/")
	if page.ProtoMajor != 2 {
		t.Fatalf("page served over %s, want HTTP/2", page.Proto)
	}
	s := alice.openStream("", "")
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("stream served over %s, want HTTP/2", s.resp.Proto)
	}
	alice.post("over h2")
	got := s.collectMessages(t, 1, 5*time.Second)
	if !sameTexts(got, []string{"over h2"}) {
		t.Fatalf("got %q", texts(got))
	}
	alice.post("missed")
	resumed := alice.openStream(got[0].ID, "").collectMessages(t, 1, 5*time.Second)
	if !sameTexts(resumed, []string{"missed"}) {
		t.Fatalf("resume over h2 got %q", texts(resumed))
	}
	if st := serverCounters(t, srv); st.Streams != 2 {
		t.Fatalf("streams = %d, want 2", st.Streams)
	}
}

// TestStreamHead: HEAD /stream answers with the stream's headers and no
// body, and opens no stream.
func TestStreamHead(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/stream", nil)
	resp := alice.do(req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.body != "" {
		t.Fatalf("HEAD /stream: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.body)
	}
	if st := serverCounters(t, srv); st.Streams != 0 {
		t.Fatalf("HEAD opened %d streams", st.Streams)
	}
}
