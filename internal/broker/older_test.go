package broker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// TestBeforePagesToTheOldest: pages read backwards from the newest hold
// every message once, in order, each at most n, the last one saying there
// is nothing more; a malformed entry is skipped but still moves the cursor.
func TestBeforePagesToTheOldest(t *testing.T) {
	fx := start(t, testConfig())
	ctx := context.Background()
	const total = 237
	for i := range total {
		fx.storeUnpublished("m" + strconv.Itoa(i))
		if i == 100 {
			fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(room), Values: []any{"m", "{"}}) // malformed
		}
	}
	var got []string
	var before chat.ID
	pages := 0
	for {
		p, err := fx.b.Before(ctx, room, before, 50)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Messages) > 50 {
			t.Fatalf("page of %d, want at most 50", len(p.Messages))
		}
		texts := make([]string, 0, len(p.Messages))
		for i, m := range p.Messages {
			texts = append(texts, m.Text)
			if id, _ := chat.ParseID(m.ID); i > 0 && !id.After(mustID(t, p.Messages[i-1].ID)) {
				t.Fatalf("page not oldest first: %v", texts)
			}
		}
		got = append(texts, got...)
		if !p.More {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		before = p.Oldest
	}
	if len(got) != total || pages != 5 { // 238 entries: 50·4 + 38
		t.Fatalf("%d messages in %d pages, want %d in 5", len(got), pages, total)
	}
	for i, s := range got {
		if s != "m"+strconv.Itoa(i) {
			t.Fatalf("message %d is %q: lost, doubled or reordered", i, s)
		}
	}

	// Exactly one page left: no "more".
	p, err := fx.b.Before(ctx, room, mustID(t, mustNewest(t, fx)), total)
	if err != nil || p.More || len(p.Messages) != total-1 {
		t.Fatalf("before the newest, all the rest: %d more=%v err=%v", len(p.Messages), p.More, err)
	}
	p, _ = fx.b.Before(ctx, room, p.Oldest, 0)
	if p.More {
		t.Fatal("nothing is older than the oldest")
	}
}

func mustID(t *testing.T, s string) chat.ID {
	t.Helper()
	id, err := chat.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustNewest(t *testing.T, fx *fixture) string {
	id, err := fx.b.Newest(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// TestNewerPage: the page after a position begins n+1 entries on, and the
// newest n are the room's own page.
func TestNewerPage(t *testing.T) {
	fx := start(t, testConfig())
	ctx := context.Background()
	var ids []chat.ID
	for i := range 30 {
		fx.storeUnpublished("m" + strconv.Itoa(i))
		ids = append(ids, mustID(t, mustNewest(t, fx)))
	}
	before, ok, err := fx.b.NewerPage(ctx, room, ids[4], 10)
	if err != nil || !ok || before != ids[15] {
		t.Fatalf("after m4: %v %v %v, want before m15", before, ok, err)
	}
	p, _ := fx.b.Before(ctx, room, before, 10)
	if p.Messages[0].Text != "m5" || p.Messages[9].Text != "m14" {
		t.Fatalf("that page is %s..%s, want m5..m14", p.Messages[0].Text, p.Messages[9].Text)
	}
	if _, ok, _ := fx.b.NewerPage(ctx, room, ids[19], 10); ok {
		t.Fatal("after m19 only ten follow: the newest page")
	}
}

// TestSearch: case-insensitive hits, newest first, bounded by hits and by
// the entries scanned.
func TestSearch(t *testing.T) {
	fx := start(t, testConfig())
	ctx := context.Background()
	for i := range 300 {
		text := "plain " + strconv.Itoa(i)
		if i%30 == 7 {
			text = "the Needle " + strconv.Itoa(i)
		}
		fx.storeUnpublished(text)
	}
	lim := SearchLimits{Hits: 50, Scan: 10000, Timeout: 5 * time.Second}
	res, err := fx.b.Search(ctx, room, "nEEDLE", lim)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 10 || !res.Complete || res.Hits[0].Text != "the Needle 277" || res.Hits[9].Text != "the Needle 7" {
		t.Fatalf("hits %d complete=%v: %v", len(res.Hits), res.Complete, res.Hits)
	}
	res, _ = fx.b.Search(ctx, room, "needle", SearchLimits{Hits: 3, Scan: 10000, Timeout: 5 * time.Second})
	if len(res.Hits) != 3 || res.Complete {
		t.Fatalf("stop after 3 hits: %d complete=%v", len(res.Hits), res.Complete)
	}
	res, _ = fx.b.Search(ctx, room, "needle", SearchLimits{Hits: 50, Scan: 150, Timeout: 5 * time.Second})
	if len(res.Hits) != 5 || res.Complete || res.Scanned != 150 {
		t.Fatalf("scan of 150: %d hits, scanned %d, complete=%v", len(res.Hits), res.Scanned, res.Complete)
	}
	res, _ = fx.b.Search(ctx, room, "nothing like it", lim)
	if len(res.Hits) != 0 || !res.Complete {
		t.Fatalf("no hits: %v", res)
	}
}
