package main

import (
	"testing"
	"time"

	"chatroom/internal/chat"
	"chatroom/internal/markup"
)

// BenchmarkMessageEvent is the per-message encoding cost (JSON and SSE
// framing), paid once per message whatever the number of streams.
func BenchmarkMessageEvent(b *testing.B) {
	m := chat.Message{ID: "1732650000000-0", Room: chat.DefaultRoom, Seq: 42, User: "alice", UID: "alice",
		Text: "hello, this is a typical chat message", Time: time.Now()}
	md := markup.New()
	b.ReportAllocs()
	for b.Loop() {
		messageEvent(md, m)
	}
}
