package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// fillHistory stores n messages of about size characters straight into the
// default room's history, as the publish script would, and returns their IDs.
func fillHistory(t testing.TB, rs *redistest.Server, n, size int) []string {
	t.Helper()
	ctx := context.Background()
	rdb := rs.Client()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			body, _ := chat.Message{User: "bob", UID: "bob", Text: fmt.Sprintf("old-%05d %s", i, strings.Repeat("x", size)), Time: time.Now()}.Body()
			p.XAdd(ctx, &redis.XAddArgs{Stream: chatHistoryKey, Values: []any{"s", i + 1, "m", string(body)}})
		}
		p.Set(ctx, "chat:{chat}:seq", n, 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range n {
		ids[i] = cmds[i].(*redis.StringCmd).Val()
	}
	return ids
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestResumeMemoryBounded (defect 3): a resume from the oldest message of a
// long history is capped (-replay-max, -replay-max-bytes) and written page
// by page. Eight of them whose clients read nothing cost the server a few
// MiB, not the whole history each; a client that reads gets a
// history-trimmed notice and then exactly the newest messages within the cap.
func TestResumeMemoryBounded(t *testing.T) {
	rs := redistest.Start(t)
	ids := fillHistory(t, rs, 4000, 2000) // 8 MB of history
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-stream-mode", mode, "-streams-per-session", "0")
			alice := login(t, srv.URL, "alice")

			before := heapInUse()
			for range 8 {
				s := openStalledStream(t, alice, ids[0])
				// The response head arrives once the replay began (today's
				// code wrote it only after building the whole replay).
				s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				head := make([]byte, 12)
				if _, err := io.ReadFull(s.conn, head); err != nil || string(head) != "HTTP/1.1 200" {
					t.Fatalf("stalled resume: %q, %v", head, err)
				}
			}
			grown := int64(heapInUse()) - int64(before)
			t.Logf("%s: heap grew by %.1f MiB for 8 stalled resumes of an 8 MB history", mode, float64(grown)/(1<<20))
			if grown > 24<<20 {
				t.Errorf("8 stalled resumes hold %.1f MiB: the replay is not bounded", float64(grown)/(1<<20))
			}

			s := alice.openStream(ids[0], "")
			ev := s.firstEvent(t, 10*time.Second)
			if ev.Event != "notice" || !strings.Contains(ev.Data, `"history-trimmed"`) {
				t.Fatalf("first event %+v, want the history-trimmed notice", ev)
			}
			got := s.collectMessages(t, 300, 10*time.Second)
			for i, m := range got {
				if want := fmt.Sprintf("old-%05d ", 3700+i); !strings.HasPrefix(m.Text, want) {
					t.Fatalf("replayed message %d is %.12q, want %q…", i, m.Text, want)
				}
			}
			if !strings.Contains(ev.Data, `"before":"`+ids[3700]+`"`) {
				t.Fatalf("notice %s does not name the oldest replayed message %s", ev.Data, ids[3700])
			}
		})
	}
}
