package sse_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"chatroom/internal/sse"
)

// A server builds a stream's prelude and each event once, into a reused
// buffer, and writes the same bytes to every subscriber.
func ExampleAppendEvent() {
	var b []byte
	b = sse.AppendRetry(b, 2*time.Second)
	b = sse.AppendComment(b, "connected")
	b = sse.AppendEnd(b)
	b, err := sse.AppendEvent(b, "1732650000000-0", "message", []byte(`{"text":"hi"}`))
	if err != nil {
		fmt.Println(err)
	}
	b, _ = sse.AppendEvent(b, "", "notice", []byte("two\nlines"))
	fmt.Printf("%s", b)

	_, err = sse.AppendEvent(nil, "1\n\ndata: forged", "message", nil)
	fmt.Println(errors.Is(err, sse.ErrInvalidField))
	// Output:
	// retry: 2000
	// : connected
	//
	// id: 1732650000000-0
	// event: message
	// data: {"text":"hi"}
	//
	// event: notice
	// data: two
	// data: lines
	//
	// true
}

// A client reads items until the stream ends; the slices are only valid
// until the next call, so it copies what it keeps.
func ExampleReader() {
	stream := "retry: 2000\n: connected\n\nid: 7-0\nevent: message\ndata: {\"text\":\"hi\"}\n\n"
	p := sse.NewReader(bytes.NewReader([]byte(stream)))
	for {
		it, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		switch it.Kind {
		case sse.KindRetry:
			fmt.Println("connected; retry after", it.Retry)
		case sse.KindComment:
			fmt.Printf("comment %q\n", it.Text)
		case sse.KindEvent:
			fmt.Printf("%s %s %s\n", it.Type, it.ID, it.Data)
		}
	}
	fmt.Printf("reconnect with Last-Event-ID: %s\n", p.LastEventID())
	// Output:
	// connected; retry after 2s
	// comment "connected"
	// message 7-0 {"text":"hi"}
	// reconnect with Last-Event-ID: 7-0
}
