package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// storedAt is a history entry written straight into Redis, at a chosen time.
type storedAt struct {
	user string
	text string
	at   time.Time
}

// fillRoomAt stores msgs in room's history as the publish script would
// (the sender's uid is their name), with their own send times.
func fillRoomAt(t testing.TB, rs *redistest.Server, room string, msgs []storedAt) []string {
	t.Helper()
	ctx := context.Background()
	cmds, err := rs.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			body, _ := chat.Message{User: m.user, UID: m.user, Text: m.text, Time: m.at.UTC()}.Body()
			p.XAdd(ctx, &redis.XAddArgs{Stream: "chat:{" + room + "}:history", Values: []any{"s", i + 1, "m", string(body)}})
		}
		p.Set(ctx, "chat:{"+room+"}:seq", len(msgs), 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(msgs))
	for i := range msgs {
		ids[i] = cmds[i].(*redis.StringCmd).Val()
	}
	return ids
}

// readerZone is a fixed time zone, not UTC, in which it is about noon now:
// "today" then has room for messages after midnight, and a local day
// differs from the UTC one.
func readerZone(t *testing.T) (string, *time.Location) {
	t.Helper()
	offset := 12 - time.Now().UTC().Hour() // hours east of UTC
	if offset == 0 {
		offset = 1
	}
	// The Etc zones have the POSIX sign: Etc/GMT-3 is three hours east.
	name := fmt.Sprintf("Etc/GMT%+d", -offset)
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("time zone %s: %v", name, err)
	}
	return name, loc
}

// setReaderZone makes the tab's page live in the time zone name.
func (b *browserTab) setReaderZone(name string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: name}); err != nil {
		b.t.Fatalf("%s: time zone %s: %v", b.name, name, err)
	}
}

// shownItem is one item of the message list, as the page shows it.
type shownItem struct {
	Kind   string `json:"kind"` // "msg", "day", "presence", "notice" or another class
	Text   string `json:"text"`
	UID    string `json:"uid"`
	Cont   bool   `json:"cont"`
	Colour string `json:"colour"` // the name's colour class
	NameW  int    `json:"nameW"`  // the name's rendered width (1 px or less: visually hidden)
	Title  string `json:"title"`  // the time's title
	Dir    string `json:"dir"`    // the name's dir
}

const shownItemsJS = `[...document.querySelectorAll("#messages > li")].map((li) => {
	const kind = li.matches(".msg.notice") ? "notice" : li.classList.contains("msg") ? "msg" : li.className.split(" ")[0];
	const user = li.querySelector(".user"), time = li.querySelector("time");
	return {
		kind,
		text: kind === "msg" ? li.querySelector(".text").textContent : li.textContent,
		uid: li.dataset.uid || "",
		cont: li.classList.contains("cont"),
		colour: user ? [...user.classList].filter((c) => /^c\d+$/.test(c)).join(" ") : "",
		nameW: user ? Math.round(user.getBoundingClientRect().width) : 0,
		title: time ? time.title : "",
		dir: user ? user.dir : "",
	};
})`

// listShape writes the list compactly: "[day label]", "text" for a message
// starting a group, "+text" for a continuation, "(presence line)".
func listShape(items []shownItem) []string {
	var out []string
	for _, it := range items {
		switch it.Kind {
		case "msg":
			out = append(out, map[bool]string{true: "+", false: ""}[it.Cont]+it.Text)
		case "day":
			out = append(out, "["+it.Text+"]")
		case "presence", "notice":
			out = append(out, "("+it.Text+")")
		}
	}
	return out
}

// dayName is how the page names a day that is neither today nor yesterday
// (toLocaleDateString with dateStyle "full", Chromium's en-US).
func dayName(d time.Time) string { return d.Format("Monday, January 2, 2006") }

// TestBrowserLooksGroupsDaysColours: with messages at chosen times (written
// straight into Redis) and a reader in a time zone that is not UTC,
// consecutive messages of one sender within 5 minutes on one local day are
// grouped (name visually hidden but there, time on hover); other senders,
// longer gaps, local midnight and a join line break a group; a day separator
// (Today, Yesterday, the full date) stands before each local day, once, on
// the server-rendered page, after scroll-back (whose boundary is regrouped)
// and for live messages; each sender's name has one colour, the one the
// server picks, everywhere (server-rendered, scroll-back, live, members
// list), and dir="auto"; each time's title is the full local date and time.
func TestBrowserLooksGroupsDaysColours(t *testing.T) {
	zone, loc := readerZone(t)
	now := time.Now().In(loc)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	d3 := today.AddDate(0, 0, -3)
	rs := redistest.Start(t)
	fillRoomAt(t, rs, "dev", []storedAt{
		{"bob", "d3-1", d3.Add(10 * time.Hour)},
		{"bob", "d3-2", d3.Add(10*time.Hour + 2*time.Minute)},               // continues
		{"bob", "d3-3", d3.Add(10*time.Hour + 9*time.Minute)},               // 7 minutes later: a new group
		{"carol", "d3-4", d3.Add(10*time.Hour + 10*time.Minute)},            // another sender
		{"carol", "y-1", today.Add(-2 * time.Minute)},                       // yesterday, 23:58
		{"carol", "t-1", today.Add(time.Minute)},                            // 3 minutes later, but today
		{"carol", "t-2", today.Add(2 * time.Minute)},                        // rendered from here (-page-history 2)
		{"carol", "t-3 https://example.com/t3", today.Add(3 * time.Minute)}, // a link: focusable
	})
	fillRoomAt(t, rs, "ops", []storedAt{{"bob", "ops-old", d3.Add(9 * time.Hour)}})
	srv := startServer(t, rs.URL(), "-page-history", "2")
	carol := login(t, srv.URL, "carol")
	carol.join("dev", "ops")

	// The server's page, before any script: a UTC full date in each title.
	plain := carol.get("/r/dev")
	wantTitle := `title="` + today.Add(2*time.Minute).UTC().Format("Monday, 2 January 2006, 15:04:05 UTC") + `"`
	if !strings.Contains(plain.body, wantTitle) {
		t.Errorf("the server-rendered page lacks the UTC full date %s", wantTitle)
	}
	if !strings.Contains(plain.body, `<b class="user c`+fmt.Sprint(senderColour("carol"))+`" dir="auto">carol</b>`) {
		t.Errorf("the server-rendered name lacks its colour class and dir=auto: %s", clip(plain.body[strings.Index(plain.body, `id="messages"`):], 600))
	}

	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.setReaderZone(zone)
	alice.loginInto(srv.URL, "/r/dev", "alice")
	alice.waitFor("connected", pageConnectedJS)

	check := func(when string, want []string) []shownItem {
		t.Helper()
		items := pageEval[[]shownItem](alice, shownItemsJS)
		if got := listShape(items); !slices.Equal(got, want) {
			t.Errorf("%s: the list reads\n%q\nwant\n%q", when, got, want)
		}
		return items
	}
	items := check("rendered", []string{"[Today]", "t-2", "+t-3 https://example.com/t3"})

	// Scroll back: the older page lands above; the "Today" separator that
	// was at the top moves above t-1 (not doubled), t-2 now continues t-1.
	pageEval[bool](alice, `(() => { const l = document.getElementById("messages"); l.scrollTop = 0; l.dispatchEvent(new Event("scroll")); return true; })()`)
	alice.waitFor("the older page", `!!document.querySelector("#messages li.history-start")`)
	items = check("after scroll-back", []string{"[" + dayName(d3) + "]", "d3-1", "+d3-2", "d3-3", "d3-4", "[Yesterday]", "y-1", "[Today]", "t-1", "+t-2", "+t-3 https://example.com/t3"})

	// Live: after t-3 (over 5 minutes ago) a new group, then one that
	// continues it; a join line in between breaks the group.
	carol.post2("dev", "live-1")
	alice.waitLastMessage("carol", "live-1")
	carol.post2("dev", "live-2")
	alice.waitLastMessage("carol", "live-2")
	dave := login(t, srv.URL, "dave")
	dave.join("dev")
	stream := dave.openStream("", "")
	defer stream.Close()
	alice.waitFor("dave's join line", `!!document.querySelector("#messages li.presence")`)
	carol.post2("dev", "live-3")
	alice.waitLastMessage("carol", "live-3")
	alice.typeAndSend("mine")
	alice.waitLastMessage("alice", "mine")
	alice.typeAndSend("mine again")
	alice.waitLastMessage("alice", "mine again")
	items = check("live", []string{"[" + dayName(d3) + "]", "d3-1", "+d3-2", "d3-3", "d3-4", "[Yesterday]", "y-1", "[Today]", "t-1", "+t-2", "+t-3 https://example.com/t3",
		"live-1", "+live-2", "(dave joined)", "live-3", "mine", "+mine again"})

	// One colour per sender, the server's, in every kind of item; names
	// with dir="auto"; a continuation's name there but visually hidden;
	// every time's title the full local date and time.
	for _, it := range items {
		if it.Kind != "msg" {
			continue
		}
		if want := fmt.Sprintf("c%d", senderColour(it.UID)); it.Colour != want {
			t.Errorf("%q by %s: colour class %q, want %q", it.Text, it.UID, it.Colour, want)
		}
		if it.Dir != "auto" {
			t.Errorf("%q by %s: name dir %q, want auto", it.Text, it.UID, it.Dir)
		}
		if it.Cont && it.NameW > 1 {
			t.Errorf("%q continues a group but shows its name (%d px wide)", it.Text, it.NameW)
		}
		if !it.Cont && it.NameW <= 1 {
			t.Errorf("%q starts a group but its name is hidden", it.Text)
		}
	}
	if senderColour("bob") == senderColour("carol") {
		t.Log("bob and carol share a colour: the test still checks each against the server's pick")
	}
	titles := pageEval[[]string](alice, `[...document.querySelectorAll("#messages time")].map((t) => t.dateTime + "|" + t.title)`)
	for _, s := range titles {
		dt, title, _ := strings.Cut(s, "|")
		at, err := time.Parse(time.RFC3339Nano, dt)
		if err != nil {
			t.Fatalf("a time's datetime %q: %v", dt, err)
		}
		at = at.In(loc)
		// en-US "full"/"medium": "Monday, November 30, 2026 at 11:02:03 AM".
		want := at.Format("Monday, January 2, 2006") + " at " + at.Format("3:04:05 PM")
		if title != want {
			t.Errorf("a time's title is %q, want the local full date and time %q", title, want)
		}
	}
	members := pageEval[[]string](alice, `(document.getElementById("online").click(),
		[...document.querySelectorAll("#members li")].map((li) => li.dataset.uid + " " + [...li.classList].filter((c) => /^(user|c\d+)$/.test(c)).join(" ") + " " + li.dir))`)
	if len(members) == 0 {
		t.Error("the members list is empty")
	}
	for _, m := range members {
		f := strings.Fields(m)
		if len(f) != 4 || f[2] != fmt.Sprintf("c%d", senderColour(f[0])) || f[3] != "auto" {
			t.Errorf("members list entry %q: want the sender's colour class and dir=auto", m)
		}
	}

	// The time of a continuation shows on focus (of a link in it) and on hover.
	const linkMeta = `getComputedStyle(document.querySelector('#messages li.cont a[href="https://example.com/t3"]').closest("li").querySelector(".meta")).opacity`
	if got := pageEval[string](alice, linkMeta); got != "0" {
		t.Errorf("a continuation's time shows (opacity %s) without focus", got)
	}
	pageEval[bool](alice, `(document.querySelector('#messages li.cont a[href="https://example.com/t3"]').focus(), true)`)
	alice.waitFor("the time shown on focus", linkMeta+` === "1"`)
	pageEval[bool](alice, `(document.activeElement.blur(), true)`)
	opacity := `getComputedStyle(document.querySelector("#messages li.cont:last-of-type .meta")).opacity`
	if got := pageEval[string](alice, opacity); got != "0" {
		t.Errorf("a continuation's time shows (opacity %s) without hover", got)
	}
	box := pageEval[[]float64](alice, `(() => { const r = document.querySelector("#messages li.cont:last-of-type").getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	alice.do("hover", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: box[0], Y: box[1]})
		return err
	}))
	alice.waitFor("the time shown on hover", opacity+` === "1"`)

	// A live message on a new day gets its separator: ops's history is
	// three days old.
	alice.do("open ops", chromedp.Navigate(srv.URL+"/r/ops"))
	alice.waitFor("connected in ops", pageConnectedJS)
	check("ops rendered", []string{"[" + dayName(d3) + "]", "ops-old"})
	carol.post2("ops", "ops-new")
	alice.waitLastMessage("carol", "ops-new")
	check("ops live", []string{"[" + dayName(d3) + "]", "ops-old", "[Today]", "ops-new"})
	checkNoPageProblems(t, alice)
}

// post2 posts text in room with the tutorial's interface, wanting 204.
func (c *chatClient) post2(room, text string) {
	c.t.Helper()
	resp := c.postForm("/r/"+room+"/post", map[string][]string{"message": {text}})
	if resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("post %q in %s: status %d: %s", text, room, resp.StatusCode, resp.body)
	}
}

var wordRE = regexp.MustCompile(`[\p{L}\p{N}]+`)

// repeatedPhrase returns a two-word phrase that occurs twice in s, or "".
func repeatedPhrase(s string) string {
	words := wordRE.FindAllString(strings.ToLower(s), -1)
	seen := map[string]bool{}
	for i := 0; i+1 < len(words); i++ {
		p := words[i] + " " + words[i+1]
		if seen[p] {
			return p
		}
		seen[p] = true
	}
	return ""
}

// headerShape is the header's height and how many rows its visible
// children sit on.
type headerShape struct {
	Height float64 `json:"height"`
	Rows   int     `json:"rows"`
	Fits   bool    `json:"fits"` // every visible child within the header's width, none overlapping, no button empty
}

const headerShapeJS = `(() => {
	const h = document.querySelector("body.chat > header");
	const tops = new Set();
	for (const el of h.children) {
		const r = el.getBoundingClientRect();
		if (r.width > 0 && r.height > 0) tops.add(Math.round(r.top + r.height / 2));
	}
	let rows = 0, last = -1e9;
	for (const c of [...tops].sort((a, b) => a - b)) { if (c - last > 8) rows++; last = c; }
	const hr = h.getBoundingClientRect();
	let fits = h.scrollWidth <= h.clientWidth && document.documentElement.scrollWidth <= innerWidth, right = hr.left;
	for (const el of h.children) {
		const r = el.getBoundingClientRect();
		if (el.id === "room-name" && r.width < 20) fits = false; // squeezed out of sight
		if (r.width === 0 || r.height === 0) continue;
		if (r.left < right - 0.5 || r.right > hr.right + 0.5) fits = false;
		right = r.right;
	}
	for (const b of h.querySelectorAll("button")) {
		if (!b.hidden && b.getBoundingClientRect().width < 24) fits = false; // an empty button
	}
	return { height: hr.height, rows, fits };
})()`

// TestBrowserCompactPhoneHeader: on a 360×740 phone the header is one row,
// as high with a name of the longest length (chat.MaxNameLen) and the store
// unavailable as with a short name and a live stream; the long name is cut
// with an ellipsis and whole in its title, the state a short word with its
// sentence as the status's text (read out) and title.
func TestBrowserCompactPhoneHeader(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	srv := startServer(t, rs.URL())
	browser := startBrowser(t)
	long := strings.Repeat("W", chat.MaxNameLen-1) + "m"
	measure := func(name string) (*browserTab, headerShape) {
		tab := newBrowserTab(t, browser, name)
		tab.do("phone", chromedp.EmulateViewport(360, 740))
		tab.loginThroughForm(srv.URL, name)
		tab.waitFor("connected", pageConnectedJS)
		return tab, pageEval[headerShape](tab, headerShapeJS)
	}
	_, short := measure("al")
	if short.Rows != 1 || !short.Fits {
		t.Errorf("with a short name the header has %d rows (%.0f px)", short.Rows, short.Height)
	}
	tab, got := measure(long)
	if got != short {
		t.Errorf("with a %d-character name the header is %+v, with a short one %+v", chat.MaxNameLen, got, short)
	}
	if title := pageEval[string](tab, `document.getElementById("me").title`); title != long {
		t.Errorf("the name's title is %q, want the full name", title)
	}
	// The store unavailable: the server renders the degraded page, then the
	// script's stream fails and says why.
	rs.Kill()
	tab.do("reload", chromedp.Reload())
	tab.waitFor("the degraded state", `document.getElementById("status").className !== "status connecting"`)
	var states []string
	for range 3 {
		state := pageEval[string](tab, `document.getElementById("status").className + " | " + document.getElementById("status").textContent`)
		states = append(states, state)
		if shape := pageEval[headerShape](tab, headerShapeJS); shape != short {
			t.Errorf("%s with a long name, the header is %+v, with a short one and connected %+v", state, shape, short)
		}
		status := pageEval[[]string](tab, `(() => { const s = document.getElementById("status"); return [s.textContent, s.title, s.dataset.short]; })()`)
		if status[0] == "" || status[1] != status[0] || status[2] == "" || len(status[2]) > len(status[0]) {
			t.Errorf("the status reads %q, title %q, short word %q: want the sentence as text and title, and a shorter word", status[0], status[1], status[2])
		}
		// Each state the page goes through while Redis is down.
		tab.poll(`document.getElementById("status").className + " | " + document.getElementById("status").textContent !== `+jsLiteral(state), 3*time.Second)
	}
	t.Logf("header %.0f px, one row, in states %q", short.Height, states)
	rs.Restart()
}

// sendState is what the page shows once a send is over.
const sendSettledJS = `(() => {
	const e = document.getElementById("send-error"), s = document.getElementById("send-state");
	return s.hidden && (!e.hidden || document.getElementById("in").value === "");
})()`

// sendAccepted types text and presses Enter until the page has it accepted
// (the box emptied, no error), pressing again while the server says to slow
// down; it fails the test on any other error.
func (b *browserTab) sendAccepted(text string) {
	b.t.Helper()
	b.do("set the text", chromedp.SetValue(chromedp.ID("in"), text))
	deadline := time.Now().Add(browserWait)
	for time.Now().Before(deadline) {
		b.pressEnter()
		b.waitFor("the send settled", sendSettledJS)
		shown := pageEval[[]string](b, `[String(document.getElementById("send-error").hidden), document.getElementById("send-error").textContent, document.getElementById("in").value]`)
		if shown[0] == "true" && shown[2] == "" {
			return
		}
		if !strings.Contains(shown[1], "too fast") {
			b.t.Fatalf("%s: sending %q: %q", b.name, text, shown[1])
		}
		// Refused by the rate limit, which frees a token within a second
		// (a refused try takes none): press again.
	}
	b.t.Fatalf("%s: %q not accepted within %v", b.name, text, browserWait)
}

// TestBrowserSendErrorsReadOnce: every way a send can be refused reads once
// ("not sent" at most once, no phrase twice), and the error goes away once
// a later send succeeds.
func TestBrowserSendErrorsReadOnce(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	srv := startServer(t, rs.URL(), "-max-message", "10", "-rate-posts", "1", "-rate-burst", "1")
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(srv.URL, "/r/dev", "alice")
	alice.waitFor("connected", pageConnectedJS)
	inPage := func(path string) {
		t.Helper()
		status := pageAwait[int](alice, `fetch(`+jsLiteral(path)+`, { method: "POST", body: new URLSearchParams(), headers: { Accept: "application/json" } }).then((r) => r.status)`)
		if status/100 != 2 {
			t.Fatalf("POST %s from the page: %d", path, status)
		}
	}
	for _, tc := range []struct {
		name   string
		text   string
		before func() // makes the send fail
		after  func() // lets a later one succeed
		want   string
	}{
		{name: "empty", text: "   ", want: "Type something before sending."},
		{name: "too long", text: "eleven char", want: "Not sent: message is too long: 11 characters, the limit is 10."},
		{name: "rate-limited", text: "quick 2", before: func() { alice.sendAccepted("quick 1") },
			want: "Not sent: slow down: you are sending messages too fast (limit 1 per second); try again in 1 s."},
		{name: "not joined", text: "hello", before: func() { inPage("/r/dev/leave") }, after: func() { inPage("/r/dev/join") },
			want: "Message not sent: join the room first (open /r/dev)."},
		{name: "store unavailable", text: "hello", before: rs.Kill, after: func() { rs.Restart(); waitReady(t, srv.URL) },
			want: "Message not sent: the chat store is unavailable, try again in a moment."},
	} {
		func() {
			if tc.before != nil {
				tc.before()
			}
			alice.do("set the text", chromedp.SetValue(chromedp.ID("in"), tc.text))
			alice.pressEnter()
			alice.waitFor("the error shown", `!document.getElementById("send-error").hidden && document.getElementById("send-state").hidden`)
			shown := pageEval[string](alice, `document.getElementById("send-error").textContent`)
			if n := strings.Count(strings.ToLower(shown), "not sent"); n > 1 {
				t.Errorf("%s: the error says \"not sent\" %d times: %q", tc.name, n, shown)
			}
			if p := repeatedPhrase(shown); p != "" {
				t.Errorf("%s: the error says %q twice: %q", tc.name, p, shown)
			}
			if shown != tc.want {
				t.Errorf("%s: the error reads %q, want %q", tc.name, shown, tc.want)
			}
			if tc.after != nil {
				tc.after()
			}
			alice.sendAccepted("ok " + strings.Fields(tc.name)[0][:3])
			if !pageEval[bool](alice, `document.getElementById("send-error").hidden && document.getElementById("send-error").textContent === ""`) {
				t.Errorf("%s: the error stays after a send succeeded", tc.name)
			}
		}()
	}
	// Refused posts log "Failed to load resource"; anything else is a problem.
	for _, p := range alice.consoleProblems() {
		if !strings.Contains(p, "Failed to load resource") {
			t.Errorf("console: %s", p)
		}
	}
}

const sessionEndedJS = `document.getElementById("send-error")?.textContent === "Your session has ended: log in again; your text is kept."`

// atLoginFor is the condition that the tab shows the login page, sent there
// to come back to path.
func atLoginFor(path string) string {
	return `location.pathname === "/login" && new URLSearchParams(location.search).get("next") === ` + jsLiteral(path) +
		` && document.querySelector('#login-form input[name="next"]')?.value === ` + jsLiteral(path)
}

// waitThroughNavigation is waitFor for a condition that a navigation
// makes true: a poll that the navigation interrupts is started again.
func (b *browserTab) waitThroughNavigation(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		err := b.poll(cond, time.Until(deadline))
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "context") {
			b.t.Fatalf("%s: %s: not so within %v (%v)\ncondition: %s\n%s", b.name, what, browserWait, err, cond, b.describe())
		}
	}
}

// logInAgain submits the login form the tab shows, as name, and expects to
// land on path.
func (b *browserTab) logInAgain(base, path, name string) {
	b.t.Helper()
	b.do("type the name", chromedp.SendKeys(chromedp.ID("user"), name))
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	if err != nil {
		b.t.Fatalf("%s: submit the login form: %v", b.name, err)
	}
	if resp.Status != http.StatusOK || resp.URL != base+path {
		b.t.Fatalf("%s: logging in again led to %d %s, want 200 %s%s", b.name, resp.Status, resp.URL, base, path)
	}
}

// checkShownTexts requires the page's messages to be exactly want, in order.
func checkShownTexts(t *testing.T, b *browserTab, want []string) {
	t.Helper()
	var texts []string
	for _, m := range b.messages() {
		texts = append(texts, m.Text)
	}
	if !slices.Equal(texts, want) {
		t.Errorf("%s shows %q, want %q: each once", b.name, texts, want)
	}
}

// TestBrowserSessionLostOnPost: a page whose session cookie no longer
// verifies (as after a restart with another session key) and that sends
// gets 401: it says the session ended, keeps the text, goes to the login
// page for this room, and after logging in the room's box holds the text
// again (once: the saved copy is cleared), which then sends once.
func TestBrowserSessionLostOnPost(t *testing.T) {
	srv := startServer(t, redistest.Start(t).URL())
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(srv.URL, "/r/dev", "alice")
	alice.waitFor("connected", pageConnectedJS)
	alice.sendAccepted("before")
	alice.do("type", chromedp.SendKeys(chromedp.ID("in"), "typed, not sent"))
	// The stream stays open (it was let in); only the post meets the 401.
	alice.do("a cookie signed with another key", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		u, _ := url.Parse(srv.URL)
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: sessionCookie, Value: "MTcwMDAwMDAwMHxmb3JnZWR8", Domain: u.Hostname(), Path: "/", HTTPOnly: new(true)})
		return err
	}))
	alice.pressEnter()
	alice.waitFor("the page says the session ended", sessionEndedJS)
	alice.waitThroughNavigation("the login page, to come back to the room", atLoginFor("/r/dev"))
	alice.logInAgain(srv.URL, "/r/dev", "alice")
	alice.waitFor("the text back in the box", `document.getElementById("in").value === "typed, not sent"`)
	if saved := pageEval[string](alice, `sessionStorage.getItem("chat.draft.dev") ?? "(none)"`); saved != "(none)" {
		t.Errorf("the saved draft %q is left in sessionStorage after it was restored", saved)
	}
	alice.waitFor("connected", pageConnectedJS)
	alice.pressEnter()
	alice.waitLastMessage("alice", "typed, not sent")
	alice.do("reload", chromedp.Reload())
	alice.waitFor("connected", pageConnectedJS)
	if got := pageEval[string](alice, `document.getElementById("in").value`); got != "" {
		t.Errorf("after a reload the box holds %q: the saved draft was not cleared", got)
	}
	checkShownTexts(t, alice, []string{"before", "typed, not sent"})
}

// TestBrowserSessionLostOnRestart (issue 10 part 9): the server restarts
// on the same address with another session key, so the page's cookie is
// no longer valid. With text typed, the page sends the user to the login
// page for this room, whether Enter is pressed (the post or the stream
// meets the 401 first) or not (the stream alone); after logging in the
// room shows the text in the box, and nothing was lost or sent twice.
func TestBrowserSessionLostOnRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	addr := browserFreeAddr(t)
	key := func(c string) string { return "-session-keys=" + strings.Repeat(c, 32) }
	server := startProcess(t, rs.URL(), addr, key("a"))
	base := server.URL
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(base, "/r/dev", "alice")
	alice.waitFor("connected", pageConnectedJS)
	alice.sendAccepted("before the restarts")
	sent := []string{"before the restarts"}

	for i, mode := range []string{"Enter pressed", "nothing pressed"} {
		typed := "typed, " + mode
		alice.do("type", chromedp.SendKeys(chromedp.ID("in"), typed))
		server.kill()
		server = startProcess(t, rs.URL(), addr, key(string(rune('b'+i))))
		if mode == "Enter pressed" {
			// Enter, unless the stream has already met the 401 and left the page.
			pressed := pageEval[bool](alice, `(() => {
				const box = document.getElementById("in");
				if (!box || location.pathname !== "/r/dev" || box.value === "") return false;
				return (box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true })), true);
			})()`)
			t.Logf("Enter pressed before the stream met the 401: %v", pressed)
		}
		alice.waitThroughNavigation(mode+": the login page, to come back to the room", atLoginFor("/r/dev"))
		alice.logInAgain(base, "/r/dev", "alice")
		alice.waitFor(mode+": the text back in the box", `document.getElementById("in").value === `+jsLiteral(typed))
		alice.waitFor("connected", pageConnectedJS)
		checkShownTexts(t, alice, sent)
		alice.pressEnter()
		alice.waitLastMessage("alice", typed)
		sent = append(sent, typed)
	}
	alice.do("reload", chromedp.Reload())
	alice.waitFor("connected", pageConnectedJS)
	checkShownTexts(t, alice, sent)
}

// TestBrowserSenderColoursContrast: a page with a message from a sender of
// each of the palette's colours (and one's own) has no axe-core colour
// contrast violation, in the light and in the dark theme.
func TestBrowserSenderColoursContrast(t *testing.T) {
	axe := axeSource(t)
	rs := redistest.Start(t)
	var msgs []storedAt
	seen := map[uint32]bool{}
	for i := 0; len(seen) < senderColours && i < 1000; i++ {
		name := fmt.Sprintf("user%d", i)
		if c := senderColour(name); !seen[c] {
			seen[c] = true
			msgs = append(msgs, storedAt{name, "colour " + fmt.Sprint(c), time.Now().Add(-time.Duration(20-len(msgs)) * time.Minute)})
		}
	}
	if len(seen) != senderColours {
		t.Fatalf("found senders for %d of %d colours", len(seen), senderColours)
	}
	fillRoomAt(t, rs, "chat", msgs)
	srv := startServer(t, rs.URL())
	browser := startBrowser(t)
	tab := newBrowserTab(t, browser, "alice")
	tab.loginThroughForm(srv.URL, "alice")
	tab.waitFor("connected", pageConnectedJS)
	tab.typeAndSend("my own")
	tab.waitLastMessage("alice", "my own")
	shown := pageEval[[]string](tab, `[...new Set([...document.querySelectorAll("#messages .user")].map((u) => getComputedStyle(u).color))]`)
	if len(shown) < senderColours {
		t.Fatalf("the page shows %d name colours, want %d: %q", len(shown), senderColours, shown)
	}
	for _, scheme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(tab.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
			t.Fatalf("emulate %s: %v", scheme, err)
		}
		// Colour contrast only: a list this long scrolls, and its keyboard
		// access is not this test's subject.
		pageEval[bool](tab, axe+";true")
		v := pageAwait[[]string](tab, `axe.run(document, {runOnly: ["color-contrast"], resultTypes: ["violations"]}).then((r) =>
			r.violations.flatMap((v) => v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary)))`)
		if len(v) > 0 {
			t.Errorf("%s theme: %d colour contrast violations:\n%s", scheme, len(v), strings.Join(v, "\n"))
		}
	}
}
