package main

import (
	"chatroom/internal/chat"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// Tests of issue 3, "never lose a message": resuming a stream after a
// disconnect, the page-load race, trimmed history and malformed IDs.

// streamModes are the two ways the server serves HTTP/1 streams.
var streamModes = []string{"pooled", "goroutine"}

// checkDelivery compares the chat messages a subscriber received with want,
// the texts that must each arrive exactly once and in this order. Texts in
// maybe (posts whose outcome the poster could not know, e.g. answered 503
// while Redis died after storing them) may arrive at most once. It logs the
// loss and duplicate counts and fails t unless loss, duplicates, reordering
// and unexpected messages are all zero.
func checkDelivery(t testing.TB, who string, got []chat.Message, want []string, maybe map[string]bool) {
	t.Helper()
	order := make(map[string]int, len(want)) // text -> position in want
	for i, w := range want {
		order[w] = i
	}
	seen := make(map[string]int, len(got))
	var dups, outOfOrder, unexpected int
	var unconfirmed []string // texts from maybe that arrived
	var prevID chat.ID
	prevPos := -1
	for i, m := range got {
		seen[m.Text]++
		if seen[m.Text] > 1 {
			dups++
		}
		id, err := chat.ParseID(m.ID)
		if err != nil || (i > 0 && !id.After(prevID)) {
			outOfOrder++
		}
		prevID = id
		pos, ok := order[m.Text]
		switch {
		case ok && pos < prevPos:
			outOfOrder++
		case ok:
			prevPos = pos
		case maybe[m.Text]:
			unconfirmed = append(unconfirmed, m.Text)
		default:
			unexpected++
		}
	}
	lost := 0
	for _, w := range want {
		if seen[w] == 0 {
			lost++
		}
	}
	t.Logf("%s: %d expected (+%d unconfirmed), %d received: lost %d, duplicates %d, out of order %d, unexpected %d",
		who, len(want), len(maybe), len(got), lost, dups, outOfOrder, unexpected)
	if len(unconfirmed) > 0 {
		t.Logf("%s: unconfirmed posts that were stored and delivered: %q", who, unconfirmed[:min(len(unconfirmed), 5)])
	}
	if lost+dups+outOfOrder+unexpected > 0 {
		t.Errorf("%s: delivery broken: lost %d, duplicates %d, out of order %d, unexpected %d", who, lost, dups, outOfOrder, unexpected)
		var first []string
		for _, w := range want {
			if seen[w] == 0 && len(first) < 5 {
				first = append(first, w)
			}
		}
		if len(first) > 0 {
			t.Logf("%s: first lost: %q", who, first)
		}
	}
}

// numbered returns n message texts "<prefix>-000" … in posting order.
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// postAll posts every text, in order.
func postAll(c *chatClient, texts []string) {
	c.t.Helper()
	for _, text := range texts {
		c.post(text)
	}
}

var lastIDAttr = regexp.MustCompile(`<body[^>]*\bdata-last-id="([^"]*)"`)

// pageLastID loads the chat page and returns the ID its stream must start
// after, as the page's script reads it from the body tag.
func pageLastID(t testing.TB, c *chatClient) string {
	t.Helper()
	resp := c.get("/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: status %d", resp.StatusCode)
	}
	m := lastIDAttr.FindStringSubmatch(resp.body)
	if m == nil {
		t.Fatalf("GET /: no data-last-id on the body tag:\n%s", clip(resp.body, 2000))
	}
	return m[1]
}

// firstEvent returns the first event of any type, failing after timeout.
func (s *sseStream) firstEvent(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.Events:
		if !ok {
			t.Fatal("stream ended before its first event")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
	}
	return sseEvent{}
}

// TestResumeAfterDisconnect: a client that was away while N messages were
// posted reconnects with the last ID it saw and gets exactly those N, in
// order, then live ones with no duplicates; the ID may come from the
// Last-Event-ID header or the last_event_id query parameter, and the header
// wins over the query.
func TestResumeAfterDisconnect(t *testing.T) {
	const n = 50
	rs := redistest.Start(t)
	for _, mode := range streamModes {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-rate-posts", "0", "-stream-mode", mode)
			bob := login(t, srv.URL, "bob")
			cases := []struct {
				name   string
				header func(last, mid string) string
				query  func(last, mid string) string
			}{
				{"header", func(last, _ string) string { return last }, func(string, string) string { return "" }},
				{"query", func(string, string) string { return "" }, func(last, _ string) string { return "last_event_id=" + url.QueryEscape(last) }},
				// The query names a later ID; the header must win, so all N arrive.
				{"header-wins", func(last, _ string) string { return last }, func(_, mid string) string { return "last_event_id=" + url.QueryEscape(mid) }},
				// A malformed query is ignored when the header is valid.
				{"header-wins-over-bad-query", func(last, _ string) string { return last }, func(string, string) string { return "last_event_id=garbage" }},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					alice := login(t, srv.URL, "alice-"+tc.name)
					s := alice.openStream("", "")
					marker := "before-" + mode + "-" + tc.name
					bob.post(marker)
					seen := s.collectMessages(t, 1, 10*time.Second)
					if len(seen) != 1 || seen[0].Text != marker {
						t.Fatalf("live stream: got %+v, want %q", seen, marker)
					}
					s.Close()

					away := numbered("away-"+mode+"-"+tc.name, n)
					postAll(bob, away)
					mid := midID(t, rs, away[n/2])

					s = alice.openStream(tc.header(seen[0].ID, mid), tc.query(seen[0].ID, mid))
					got := s.collectMessages(t, n, 10*time.Second)
					live := "live-" + mode + "-" + tc.name
					bob.post(live)
					got = append(got, s.collectMessages(t, 1, 10*time.Second)...)
					checkDelivery(t, "alice after reconnect", got, append(away, live), nil)
					if len(got) != n+1 {
						t.Fatalf("got %d messages, want %d", len(got), n+1)
					}
					// Nothing may follow: a duplicate of a replayed message
					// would come after the live one if the skip failed.
					bob.post("sentinel-" + tc.name)
					if m := s.collectMessages(t, 1, 10*time.Second); len(m) != 1 || m[0].Text != "sentinel-"+tc.name {
						t.Fatalf("after the live message: got %+v, want only the sentinel", m)
					}
				})
			}
		})
	}
}

// midID returns the stored ID of the message with the given text, read
// straight from Redis.
func midID(t testing.TB, rs *redistest.Server, text string) string {
	t.Helper()
	xs, err := rs.Client().XRevRangeN(context.Background(), chatHistoryKey, "+", "-", 200).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		if body, _ := x.Values["m"].(string); strings.Contains(body, `"text":"`+text+`"`) {
			return x.ID
		}
	}
	t.Fatalf("message %q not in history", text)
	return ""
}

// TestPageLoadRace: the chat page names the last message it rendered; a
// stream opened with that ID (as the page's script does) gets every message
// posted after the render, even those posted before the stream opened, and
// none of those already on the page. An empty history must not open a gap
// either.
func TestPageLoadRace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int // messages in history before the page is rendered
	}{{"empty-history", 0}, {"with-history", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.Start(t)
			srv := startServer(t, rs.URL(), "-rate-posts", "0")
			bob := login(t, srv.URL, "bob")
			postAll(bob, numbered("rendered", tc.before))

			alice := login(t, srv.URL, "alice")
			last := pageLastID(t, alice)
			if tc.before > 0 && last != midID(t, rs, fmt.Sprintf("rendered-%03d", tc.before-1)) {
				t.Fatalf("data-last-id = %q, want the ID of the last rendered message", last)
			}
			between := numbered("between", 10)
			postAll(bob, between) // after the render, before the stream opens

			query := ""
			if last != "" {
				query = "last_event_id=" + url.QueryEscape(last)
			}
			s := alice.openStream("", query)
			got := s.collectMessages(t, len(between), 10*time.Second)
			bob.post("live")
			got = append(got, s.collectMessages(t, 1, 10*time.Second)...)
			checkDelivery(t, "page stream", got, append(between, "live"), nil)
		})
	}
}

// TestResumeTrimmedHistory: resuming from an ID older than the oldest kept
// message replays everything kept, in order, after a notice that older
// history was trimmed; resuming from a kept ID gets no such notice.
func TestResumeTrimmedHistory(t *testing.T) {
	// Small stream nodes make MAXLEN ~ trim at a fine grain, so a few dozen
	// posts are enough to trim a 10-message history.
	rs := redistest.Start(t, redistest.Args("--stream-node-max-entries", "4"))
	srv := startServer(t, rs.URL(), "-rate-posts", "0", "-history", "10")
	bob := login(t, srv.URL, "bob")
	bob.post("first")
	first := midID(t, rs, "first")
	all := numbered("msg", 60)
	postAll(bob, all)

	ctx := context.Background()
	kept, err := rs.Client().XRange(ctx, chatHistoryKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) < 10 || len(kept) >= len(all) {
		t.Fatalf("history holds %d messages; want it trimmed to about 10", len(kept))
	}
	var keptTexts []string
	for _, x := range kept {
		m, err := decodeStored(t, x)
		if err != nil {
			t.Fatal(err)
		}
		keptTexts = append(keptTexts, m.Text)
	}

	t.Run("older-than-kept", func(t *testing.T) {
		alice := login(t, srv.URL, "alice")
		s := alice.openStream(first, "")
		ev := s.firstEvent(t, 10*time.Second)
		if ev.Event != "notice" || !strings.Contains(ev.Data, `"code":"history-trimmed"`) {
			t.Fatalf("first event = %+v, want a history-trimmed notice", ev)
		}
		got := s.collectMessages(t, len(kept), 10*time.Second)
		checkDelivery(t, "resume from a trimmed ID", got, keptTexts, nil)
	})
	t.Run("kept-id", func(t *testing.T) {
		alice := login(t, srv.URL, "carol")
		s := alice.openStream(kept[0].ID, "")
		ev := s.firstEvent(t, 10*time.Second)
		if ev.Event != "message" {
			t.Fatalf("first event = %+v, want a message (nothing was lost, so no notice)", ev)
		}
		m, err := decodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		got := append([]chat.Message{m}, s.collectMessages(t, len(kept)-2, 10*time.Second)...)
		checkDelivery(t, "resume from a kept ID", got, keptTexts[1:], nil)
	})
}

// TestMalformedLastEventID: a malformed ID is answered as "no ID": a 200
// stream that starts with a bad-last-event-id notice and then carries live
// messages, never an error status.
func TestMalformedLastEventID(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	bob.post("old") // must not be replayed: a bad ID means "from now on"
	for i, tc := range []struct{ header, query string }{
		{header: "garbage"},
		{header: "1-"},
		{header: "-1"},
		{header: "1-2-3"},
		{query: "last_event_id=" + url.QueryEscape(" 1-2")},
		{header: "99999999999999999999999-1"},
		{header: "1-2;DROP"},
		{query: "last_event_id=" + url.QueryEscape("(0-0")},
		{query: "last_event_id=" + url.QueryEscape("+")},
		{query: "last_event_id=" + url.QueryEscape(strings.Repeat("9", 200))},
	} {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			alice := login(t, srv.URL, fmt.Sprintf("alice%d", i))
			s := alice.openStream(tc.header, tc.query) // fails unless 200
			ev := s.firstEvent(t, 10*time.Second)
			if ev.Event != "notice" || !strings.Contains(ev.Data, `"code":"bad-last-event-id"`) {
				t.Fatalf("first event = %+v, want a bad-last-event-id notice", ev)
			}
			text := fmt.Sprintf("live-%d", i)
			bob.post(text)
			got := s.collectMessages(t, 1, 10*time.Second)
			checkDelivery(t, "stream with a bad ID", got, []string{text}, nil)
		})
	}
}
