package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// fillRoom stores texts straight into room's history, as the publish script
// would, and returns their IDs.
func fillRoom(t testing.TB, rs *redistest.Server, room string, texts []string) []string {
	t.Helper()
	ctx := context.Background()
	rdb := rs.Client()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, text := range texts {
			body, _ := chat.Message{User: "bob", UID: "bob", Text: text, Time: time.Now()}.Body()
			p.XAdd(ctx, &redis.XAddArgs{Stream: "chat:{" + room + "}:history", Values: []any{"s", i + 1, "m", string(body)}})
		}
		p.Set(ctx, "chat:{"+room+"}:seq", len(texts), 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(texts))
	for i := range texts {
		ids[i] = cmds[i].(*redis.StringCmd).Val()
	}
	return ids
}

func numberedTexts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func (c *chatClient) historyPage(path string) historyPage {
	c.t.Helper()
	resp := c.get(path)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.body)
	}
	var p historyPage
	if err := json.Unmarshal([]byte(resp.body), &p); err != nil {
		c.t.Fatalf("GET %s: %v: %s", path, err, clip(resp.body, 200))
	}
	return p
}

// TestHistoryPages: /r/{room}/history pages back from the newest to the
// oldest kept message, every message once and in order, at most limit a
// page; bad input is 400, logged out 401, a room not joined 403.
func TestHistoryPages(t *testing.T) {
	rs := redistest.Start(t)
	texts := numberedTexts("dev", 237)
	ids := fillRoom(t, rs, "dev", texts)
	fillRoom(t, rs, "chat", numberedTexts("chat", 3))
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	alice.join("dev")

	far := chat.ID{Ms: ^uint64(0) >> 1}.String() // after everything
	next := far
	var got []string
	pages := 0
	for {
		p := alice.historyPage("/r/dev/history?before=" + next + "&limit=100")
		pages++
		if p.Room != "dev" || len(p.Messages) > 100 {
			t.Fatalf("page %d: room %q, %d messages", pages, p.Room, len(p.Messages))
		}
		var page []string
		for _, m := range p.Messages {
			page = append(page, m.Text)
		}
		got = append(page, got...)
		if !p.More {
			break
		}
		if p.Before != p.Messages[0].ID || pages > 5 {
			t.Fatalf("page %d: before %q, oldest %q", pages, p.Before, p.Messages[0].ID)
		}
		next = p.Before
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(texts, ",") {
		t.Fatalf("%d pages, %d messages: lost, doubled or reordered", pages, len(got))
	}
	// The default limit is 50; before is exclusive.
	p := alice.historyPage("/r/dev/history?before=" + ids[100])
	if len(p.Messages) != 50 || p.Messages[49].Text != "dev-099" || p.Messages[0].Text != "dev-050" || !p.More {
		t.Fatalf("default page before dev-100: %d, %q..%q", len(p.Messages), p.Messages[0].Text, p.Messages[len(p.Messages)-1].Text)
	}
	if p := alice.historyPage("/r/dev/history?before=" + ids[0]); len(p.Messages) != 0 || p.More || p.Before != "" {
		t.Fatalf("before the oldest: %+v", p)
	}
	// The default room, under /r/chat.
	if p := alice.historyPage("/r/chat/history?before=" + far); p.Room != "chat" || len(p.Messages) != 3 {
		t.Fatalf("default room: %+v", p)
	}

	for path, want := range map[string]int{
		"/r/dev/history":                           400,
		"/r/dev/history?before=":                   400,
		"/r/dev/history?before=0-0":                400,
		"/r/dev/history?before=1-x":                400,
		"/r/dev/history?before=%2B":                400,
		"/r/dev/history?before=1-1&limit=0":        400,
		"/r/dev/history?before=1-1&limit=101":      400,
		"/r/dev/history?before=1-1&limit=ten":      400,
		"/r/dev/history?before=1-1&limit=100":      200,
		"/r/dev/history?before=1-1&limit=1":        200,
		"/r/ops/history?before=1-1":                403,
		"/r/d%C3%A9v/history?before=1-1":           400,
		"/r/dev/history?before=" + ids[5] + "&x=1": 200,
	} {
		if resp := alice.get(path); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, resp.body)
		}
	}
	if resp := newClient(t, srv.URL).get("/r/dev/history?before=1-1"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("logged out: %d", resp.StatusCode)
	}
	if resp := newClient(t, srv.URL).get("/r/chat/history?before=1-1"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("logged out, default room: %d", resp.StatusCode)
	}
}

var (
	renderedIDs = regexp.MustCompile(`<li class="msg[^"]*" id="m-([0-9]+-[0-9]+)"`)
	olderHref   = regexp.MustCompile(`id="older" href="([^"]+)"`)
	newerHref   = regexp.MustCompile(`id="newer" href="([^"]+)"`)
)

// TestHistoryWithoutJS: the page links to older messages; following the
// links back renders every kept message once, down to the oldest (no link
// there), and the "newer" links lead back up to the room's own page. A
// history view has no live stream position to start from in the past: it
// says it is not live.
func TestHistoryWithoutJS(t *testing.T) {
	rs := redistest.Start(t)
	texts := numberedTexts("m", 120)
	ids := fillRoom(t, rs, "chat", texts)
	srv := startServer(t, rs.URL(), "-page-history", "50")
	alice := login(t, srv.URL, "alice")

	page := alice.get("/")
	if ms := renderedIDs.FindAllStringSubmatch(page.body, -1); len(ms) != 50 || ms[0][1] != ids[70] {
		t.Fatalf("room page renders %d messages", len(ms))
	}
	if strings.Contains(page.body, `id="history-view"`) || strings.Contains(page.body, "data-before=") {
		t.Fatal("the room's own page is not a history view")
	}
	seen := map[string]int{}
	var order []string
	path := "/"
	for hops := 0; ; hops++ {
		body := alice.get(path).body
		ms := renderedIDs.FindAllStringSubmatch(body, -1)
		var these []string
		for _, m := range ms {
			seen[m[1]]++
			these = append(these, m[1])
		}
		order = append(these, order...)
		if path != "/" && (!strings.Contains(body, `id="history-view"`) || !strings.Contains(body, `data-before=`)) {
			t.Fatalf("%s is not marked as a history view", path)
		}
		m := olderHref.FindStringSubmatch(body)
		if m == nil {
			break
		}
		if hops > 5 {
			t.Fatal("the older links do not end")
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.HasPrefix(path, "/?before=") {
			t.Fatalf("default room's older link %q", path)
		}
	}
	if strings.Join(order, ",") != strings.Join(ids, ",") || len(seen) != len(ids) {
		t.Fatalf("the pages show %d messages (%d distinct), want %d once each", len(order), len(seen), len(ids))
	}
	// Back up with the newer links: from the oldest page to the room page.
	var up []string
	for hops := 0; path != "/"; hops++ {
		body := alice.get(path).body
		m := newerHref.FindStringSubmatch(body)
		if m == nil || hops > 5 {
			t.Fatalf("%s: no newer link", path)
		}
		up = append(up, path)
		path = m[1]
	}
	if len(up) != 2 { // 120 = 20 + 50 + 50: two history pages, then the room's own
		t.Fatalf("newer links go %v", up)
	}
	if resp := alice.get("/?before=nope"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad before on the page: %d", resp.StatusCode)
	}
}

// TestSearchRoute: case-insensitive hits, newest first, each linking to the
// history page that ends with it (and renders it); no hits; the joined
// check; the per-user rate limit.
func TestSearchRoute(t *testing.T) {
	rs := redistest.Start(t)
	texts := numberedTexts("dev", 300)
	texts[17] = "the Deploy went fine"
	texts[250] = "deploy again"
	ids := fillRoom(t, rs, "dev", texts)
	srv := startServer(t, rs.URL())
	alice := login(t, srv.URL, "alice")
	alice.join("dev")

	page := alice.get("/r/dev/search?q=DEPLOY")
	if page.StatusCode != 200 {
		t.Fatalf("search: %d %s", page.StatusCode, page.body)
	}
	links := regexp.MustCompile(`<a href="([^"]+)">`).FindAllStringSubmatch(page.body, -1)
	var hits []string
	for _, l := range links {
		if strings.Contains(l[1], "#m-") {
			hits = append(hits, strings.ReplaceAll(l[1], "&amp;", "&"))
		}
	}
	if len(hits) != 2 || !strings.HasSuffix(hits[0], "#m-"+ids[250]) || !strings.HasSuffix(hits[1], "#m-"+ids[17]) {
		t.Fatalf("hits %v", hits)
	}
	// The hit's page renders the hit, as its newest message.
	u, _ := url.Parse(hits[1])
	body := alice.get(u.RequestURI()).body
	ms := renderedIDs.FindAllStringSubmatch(body, -1)
	if len(ms) == 0 || ms[len(ms)-1][1] != ids[17] || !strings.Contains(body, "the Deploy went fine") {
		t.Fatalf("the hit's page %s does not end with it", u.RequestURI())
	}
	if page := alice.get("/r/dev/search?q=no+such+words"); page.StatusCode != 200 || !strings.Contains(page.body, "0 messages found") {
		t.Fatalf("no hits: %d %s", page.StatusCode, clip(page.body, 300))
	}
	if resp := alice.get("/r/ops/search?q=x"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a room not joined: %d", resp.StatusCode)
	}
	if resp := newClient(t, srv.URL).get("/r/dev/search?q=x"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("logged out: %d", resp.StatusCode)
	}
	// 10 a minute: two used, eight more, then 429; another user is not limited.
	for i := range 8 {
		if resp := alice.get("/r/dev/search?q=x"); resp.StatusCode != 200 {
			t.Fatalf("search %d: %d", i+3, resp.StatusCode)
		}
	}
	if resp := alice.get("/r/dev/search?q=x"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("search past the limit: %d", resp.StatusCode)
	}
	if resp := login(t, srv.URL, "bob").get("/r/chat/search?q=x"); resp.StatusCode != 200 {
		t.Fatalf("another user: %d", resp.StatusCode)
	}
}
