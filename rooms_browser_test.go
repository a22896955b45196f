package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// The browser tests of rooms (issue 9): two or three people in private
// windows of one real Chromium, on two real server processes sharing one
// real redis-server. What they check is what the people see: who is online,
// "bob joined" / "bob left", "bob is typing…", unread counts per room, and
// that a room shows only its own messages. Every wait is a condition polled
// in the page, never a sleep.

// roomsServerFlags are the flags of the servers in these tests: a short
// presence grace, so that a closed tab is announced as a leave within a
// second or two, while a reload (much faster here) is still not one; and a
// short heartbeat, which is when a pooled stream notices that its peer has
// closed (15 s by default).
func roomsServerFlags() []string {
	return []string{"-presence-grace", "2s", "-heartbeat", "1s"}
}

// startRoomsServers starts two server processes on one redis-server: A
// serves streams pooled (the default), B each from its own goroutine. B
// notices at once that a stream's peer has gone (A at its next heartbeat),
// so on B a reload really ends one stream before the next begins, and only
// the presence grace keeps it from being a leave and a join.
func startRoomsServers(t *testing.T) (a, b *serverProcess) {
	t.Helper()
	rs := redistest.Start(t)
	a = startProcess(t, rs.URL(), "127.0.0.1:0", roomsServerFlags()...)
	b = startProcess(t, rs.URL(), "127.0.0.1:0", append(roomsServerFlags(), "-stream-mode", "goroutine")...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance A's log:\n%s\ninstance B's log:\n%s", a.logs, b.logs)
		}
	})
	return a, b
}

// pageAwait evaluates a JavaScript expression whose value is a promise in
// the tab and decodes what it resolves to.
func pageAwait[T any](b *browserTab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// jsJSON writes v as a JavaScript literal.
func jsJSON(v any) string {
	j, _ := json.Marshal(v)
	return string(j)
}

// loginInto opens path on base without a session, expects the login page
// with path as its hidden next field, logs in as name and expects to land on
// path, connected.
func (b *browserTab) loginInto(base, path, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+path))
	if err != nil {
		b.t.Fatalf("%s: open %s%s: %v", b.name, base, path, err)
	}
	if resp.Status != http.StatusOK || !strings.Contains(resp.URL, "/login") {
		b.t.Fatalf("%s: opening %s without a session gave %d %s, want the login page", b.name, path, resp.Status, resp.URL)
	}
	if next := pageEval[string](b, `document.querySelector('#login-form input[name="next"]')?.value ?? "(none)"`); next != path {
		b.t.Errorf("%s: the login page for %s has next = %q, want %q", b.name, path, next, path)
	}
	b.do("type the name", chromedp.SendKeys(chromedp.ID("user"), name))
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	if err != nil {
		b.t.Fatalf("%s: submit the login form: %v", b.name, err)
	}
	if resp.Status != http.StatusOK || resp.URL != base+path {
		b.t.Fatalf("%s: login from %s led to %d %s, want 200 %s%s\n%s", b.name, path, resp.Status, resp.URL, base, path, b.describe())
	}
	if got := pageEval[string](b, `document.getElementById("me").textContent`); got != name {
		b.t.Fatalf("%s: the page greets %q, want %q", b.name, got, name)
	}
	b.waitFor("status shows connected", pageConnectedJS)
}

// openRoom navigates to base+path and waits until the page of room is
// connected.
func (b *browserTab) openRoom(base, path, room string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+path))
	if err != nil {
		b.t.Fatalf("%s: open %s: %v", b.name, path, err)
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("%s: open %s: status %d", b.name, path, resp.Status)
	}
	b.checkRoomPage(room)
}

// clickRoom follows the sidebar's link to room, as a person does.
func (b *browserTab) clickRoom(room string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#joined li[data-room=%q] a`, room))))
	if err != nil {
		b.t.Fatalf("%s: follow the sidebar link to %s: %v\n%s", b.name, room, err, b.describe())
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("%s: the sidebar link to %s gave %d %s", b.name, room, resp.Status, resp.URL)
	}
	b.checkRoomPage(room)
}

// checkRoomPage checks that the tab shows room, connected.
func (b *browserTab) checkRoomPage(room string) {
	b.t.Helper()
	b.waitFor("status shows connected", pageConnectedJS)
	got := pageEval[[]string](b, `[document.body.dataset.room, document.getElementById("room-name").textContent.trim(),
		document.querySelector("#joined a[aria-current=page]")?.textContent ?? ""]`)
	if want := []string{room, "#" + room, "#" + room}; !slices.Equal(got, want) {
		b.t.Errorf("%s: room page shows (data-room, header, current sidebar link) %q, want %q", b.name, got, want)
	}
}

// onlineIs is the condition that the header shows exactly people online:
// "N online", and the member list with their names.
func onlineIs(people ...string) string {
	people = slices.Sorted(slices.Values(people))
	return fmt.Sprintf(`(() => {
		const want = %s;
		const count = document.getElementById("online").textContent.trim();
		const shown = [...document.querySelectorAll("#members li")].map((li) => li.firstChild.textContent).sort();
		return count === want.length + " online" && JSON.stringify(shown) === JSON.stringify(want);
	})()`, jsJSON(people))
}

// noticeShown is the condition that a join/leave line of the room contains
// text.
func noticeShown(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages li.presence")].some((li) => li.textContent.includes(%s))`, jsLiteral(text))
}

// watchNotices records every text a join/leave line of the page ever shows
// (window.testNotices), so a "bob left" that was shown and then merged away
// is still seen.
func (b *browserTab) watchNotices() {
	b.t.Helper()
	pageEval[chromedp.Void](b, `(() => {
		const seen = window.testNotices = [];
		const look = () => {
			for (const li of document.querySelectorAll("#messages li.presence")) {
				if (!seen.includes(li.textContent)) seen.push(li.textContent);
			}
		};
		look();
		new MutationObserver(look).observe(document.getElementById("messages"), { childList: true, subtree: true, characterData: true });
	})()`)
}

func (b *browserTab) noticesSeen() []string {
	b.t.Helper()
	return pageEval[[]string](b, `window.testNotices`)
}

// receivedEvents returns the data of the raw events of type the page's
// EventSource delivered (window.chatReceived).
func receivedEvents[T any](b *browserTab, eventType string) []T {
	b.t.Helper()
	return pageEval[[]T](b, fmt.Sprintf(`window.chatReceived.filter((e) => e.type === %s).map((e) => JSON.parse(e.data))`, jsLiteral(eventType)))
}

// roomMessage is the part of a message event's data these tests look at.
type roomMessage struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

type presenceChange struct {
	Room string `json:"room"`
	User string `json:"user"`
	UID  string `json:"uid"`
}

// TestBrowserRoomsPresence: alice and bob in room dev, on two instances.
// Both come in through the login page, which brings them back to /r/dev.
// Each sees the other in the header's count and member list; alice sees
// "bob joined" when bob opens the room, and "bob left" when he navigates
// away; a reload of bob's page is not a leave and a join, neither on the
// stream nor on alice's page, checked until after the presence grace has
// passed (carol, who closes her tab after bob's reload began, is announced
// as gone first).
func TestBrowserRoomsPresence(t *testing.T) {
	a, b := startRoomsServers(t)
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	bob := newBrowserTab(t, browser, "bob")
	carol := newBrowserTab(t, browser, "carol")

	alice.loginInto(a.URL, "/r/dev", "alice")
	alice.checkRoomPage("dev")
	alice.waitFor("alice sees herself online", onlineIs("alice"))
	alice.watchNotices()

	bob.loginInto(b.URL, "/r/dev", "bob")
	alice.waitFor("alice sees bob online", onlineIs("alice", "bob"))
	alice.waitFor(`alice sees "bob joined"`, noticeShown("bob joined"))
	bob.waitFor("bob sees alice online", onlineIs("alice", "bob"))

	// The count is a button that shows the member list.
	const membersVisible = `(() => {
		const m = document.getElementById("members");
		return !m.hidden && m.offsetParent !== null && document.getElementById("online").getAttribute("aria-expanded") === "true";
	})()`
	if pageEval[bool](bob, membersVisible) {
		t.Errorf("bob: the member list is open before the count is clicked")
	}
	bob.do("click the online count", chromedp.Click(chromedp.ID("online")))
	bob.waitFor("the member list opens", membersVisible)
	if got := pageEval[string](bob, `document.querySelector("#members li.me")?.textContent ?? ""`); got != "bob (you)" {
		t.Errorf("bob's own entry in the member list is %q, want %q", got, "bob (you)")
	}

	// A reload is not a leave + join. Carol is in the room too and closes her
	// tab after bob's reload has begun: once alice sees "carol left", the
	// grace of bob's old stream has ended as well.
	carol.loginInto(b.URL, "/r/dev", "carol")
	alice.waitFor("alice sees carol online", onlineIs("alice", "bob", "carol"))
	bob.do("reload", chromedp.Reload())
	bob.waitFor("bob's reloaded page is connected", pageConnectedJS)
	carol.do("close carol's page", chromedp.Navigate("about:blank"))
	alice.waitFor(`alice sees "carol left"`, noticeShown("carol left")+" && "+onlineIs("alice", "bob"))
	bob.typeAndSend("back after a reload")
	alice.waitLastMessage("bob", "back after a reload")
	for _, ev := range receivedEvents[presenceChange](alice, "leave") {
		if ev.User == "bob" {
			t.Errorf("alice's stream announced bob's reload as a leave: %+v", ev)
		}
	}
	for _, n := range alice.noticesSeen() {
		if strings.Contains(n, "bob left") {
			t.Errorf("alice's page showed %q for bob's reload", n)
		}
	}
	if !pageEval[bool](alice, onlineIs("alice", "bob")) {
		t.Errorf("after bob's reload alice does not see exactly alice and bob online\n%s", alice.describe())
	}

	// Bob goes away: alice sees him leave, on the other instance.
	bob.do("navigate away", chromedp.Navigate("about:blank"))
	alice.waitFor(`alice sees "bob left"`, noticeShown("bob left")+" && "+onlineIs("alice"))

	// Never a notice of one's own coming and going.
	for _, n := range alice.noticesSeen() {
		if strings.Contains(n, "alice") {
			t.Errorf("alice's page shows a notice about herself: %q", n)
		}
	}
	checkNoPageProblems(t, alice, bob, carol)
}

// checkNoPageProblems requires that no tab logged an error or CSP
// violation or opened a dialog.
func checkNoPageProblems(t *testing.T, tabs ...*browserTab) {
	t.Helper()
	for _, u := range tabs {
		if p := u.consoleProblems(); len(p) != 0 {
			t.Errorf("%s: console errors or CSP violations:\n%s", u.name, strings.Join(p, "\n"))
		}
		if d := u.dialogsOpened(); len(d) != 0 {
			t.Errorf("%s: JavaScript dialogs opened: %q", u.name, d)
		}
	}
}

// typingIs is the condition that the typing line reads text exactly.
func typingIs(text string) string {
	return fmt.Sprintf(`document.getElementById("typing").textContent === %s`, jsLiteral(text))
}

// TestBrowserRoomsTyping: typing in ops is not shown in dev; bob types in
// dev and alice, on the other instance, sees "bob is typing…"; the page sends one typing signal for a
// burst of keystrokes; the line goes the moment bob's message arrives, and by
// itself a few seconds after bob stops typing; two typists read "bob and
// carol are typing…". Bob never sees himself typing, although his stream
// tells him.
func TestBrowserRoomsTyping(t *testing.T) {
	a, b := startRoomsServers(t)
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	bob := newBrowserTab(t, browser, "bob")
	carol := newBrowserTab(t, browser, "carol")
	alice.loginInto(a.URL, "/r/ops", "alice")
	alice.openRoom(a.URL, "/r/dev", "dev") // her stream carries ops too
	bob.loginInto(b.URL, "/r/dev", "bob")
	carol.loginInto(a.URL, "/r/dev", "carol")
	for _, u := range []*browserTab{alice, bob, carol} {
		u.waitFor("everyone online", onlineIs("alice", "bob", "carol"))
	}

	// Typing in another room is not shown in this one.
	if got := pageAwait[int](bob, `fetch("/r/ops/typing", { method: "POST" }).then((r) => r.status)`); got != http.StatusNoContent {
		t.Fatalf("bob's typing signal in ops: status %d", got)
	}
	alice.waitFor("alice's stream brings bob's typing in ops", `window.chatReceived.some((e) => e.type === "typing" && e.room === "ops")`)
	if got := pageEval[string](alice, `document.getElementById("typing").textContent`); got != "" {
		t.Errorf("alice in dev sees %q for bob typing in ops", got)
	}

	// Count the typing signals bob's page sends (the page calls the global
	// fetch each time).
	pageEval[chromedp.Void](bob, `(() => {
		window.testTypingPosts = 0;
		const real = window.fetch;
		window.fetch = (u, o) => {
			if (String(u).endsWith("/typing")) window.testTypingPosts++;
			return real(u, o);
		};
	})()`)
	// When bob's message lands in alice's list, note what the typing line
	// read just before (after the previous change) and right after.
	pageEval[chromedp.Void](alice, `(() => {
		const typing = document.getElementById("typing");
		let before = typing.textContent;
		window.testTypingAtMessage = null;
		new MutationObserver((records) => {
			for (const r of records) {
				for (const n of r.addedNodes) {
					if (n.dataset && n.dataset.uid === "bob" && !window.testTypingAtMessage) {
						window.testTypingAtMessage = { before, after: typing.textContent };
					}
				}
			}
			before = typing.textContent;
		}).observe(document.body, { childList: true, subtree: true, characterData: true });
	})()`)

	const reply = "alice, here is my answer to that"
	start := time.Now()
	bob.do("type", chromedp.SendKeys(chromedp.ID("in"), reply))
	typed := time.Since(start)
	alice.waitFor(`alice sees "bob is typing…"`, typingIs("bob is typing…"))
	posts := pageEval[int](bob, `window.testTypingPosts`)
	if most := 1 + int(typed/(3*time.Second)); posts < 1 || posts > most {
		t.Errorf("bob's page sent %d typing signals for %d keystrokes in %v, want 1 to %d (one per 3 s)", posts, len(reply), typed, most)
	}
	if got := pageEval[string](carol, `document.getElementById("typing").textContent`); got != "bob is typing…" && got != "" {
		t.Errorf("carol's typing line reads %q", got)
	}
	// The stream tells bob too; his page shows nothing.
	bob.waitFor("bob's stream brings his own typing signal", `window.chatReceived.some((e) => e.type === "typing" && JSON.parse(e.data).uid === "bob")`)
	if got := pageEval[string](bob, `document.getElementById("typing").textContent`); got != "" {
		t.Errorf("bob's own typing line reads %q", got)
	}

	bob.pressEnter()
	alice.waitLastMessage("bob", reply)
	type typingLine struct {
		Before string `json:"before"`
		After  string `json:"after"`
	}
	at := pageEval[typingLine](alice, `window.testTypingAtMessage`)
	if at.Before != "bob is typing…" || at.After != "" {
		t.Errorf("when bob's message arrived alice's typing line went from %q to %q, want from %q to empty", at.Before, at.After, "bob is typing…")
	}
	if n := pageEval[int](bob, `window.testTypingPosts`); n != posts {
		t.Errorf("bob's page sent %d typing signals on sending, want none", n-posts)
	}

	// Typing without sending: shown, then gone by itself. Bob types on
	// until alice sees it (the page waits 3 s from its last signal).
	typeUntil(bob, alice, `alice sees "bob is typing…" again`, typingIs("bob is typing…"))
	shown := time.Now()
	alice.waitFor("the typing line clears by itself", typingIs(""))
	if d := time.Since(shown); d < 2*time.Second {
		t.Errorf("the typing line cleared %v after it showed, want it shown for a few seconds", d)
	}

	// Two people typing.
	bob.do("bob types", chromedp.SendKeys(chromedp.ID("in"), ", and another"))
	carol.do("carol types", chromedp.SendKeys(chromedp.ID("in"), "hold on"))
	alice.waitFor("alice sees both typing", typingIs("bob and carol are typing…")+" || "+typingIs("carol and bob are typing…"))
	alice.waitFor("both typing lines clear by themselves", typingIs(""))

	checkNoPageProblems(t, alice, bob, carol)
}

// typeUntil has typist type one character at a time, as a person does,
// until cond holds in watcher's page.
func typeUntil(typist, watcher *browserTab, what, cond string) {
	typist.t.Helper()
	deadline := time.Now().Add(browserWait)
	for time.Now().Before(deadline) {
		typist.do("type a character", chromedp.SendKeys(chromedp.ID("in"), "."))
		if watcher.poll(cond, 250*time.Millisecond) == nil {
			return
		}
	}
	watcher.waitFor(what, cond) // fails, describing the page
}

// sidebarBadges returns the unread badge of each joined room in the
// sidebar ("" when none is shown), in sidebar order as "room:badge".
func sidebarBadges(b *browserTab) []string {
	b.t.Helper()
	return pageEval[[]string](b, `[...document.querySelectorAll("#joined li")].map((li) => {
		const badge = li.querySelector(".unread");
		return li.dataset.room + ":" + (badge && !badge.hidden && badge.offsetParent !== null ? badge.textContent : "");
	})`)
}

func badgesAre(want ...string) string {
	return fmt.Sprintf(`JSON.stringify([...document.querySelectorAll("#joined li")].map((li) => {
		const badge = li.querySelector(".unread");
		return li.dataset.room + ":" + (badge && !badge.hidden && badge.offsetParent !== null ? badge.textContent : "");
	})) === %s`, jsLiteral(jsJSON(want)))
}

// shownTexts returns the texts of the chat messages the page shows.
func shownTexts(b *browserTab) []string {
	b.t.Helper()
	var out []string
	for _, m := range b.messages() {
		out = append(out, m.Text)
	}
	return out
}

// TestBrowserRoomsUnread: alice has joined dev and ops and has dev open; bob
// posts in ops (on the other instance): alice's sidebar counts them on ops
// and not on dev, and dev's list never shows them; opening ops shows them
// and clears the count, which stays cleared when she goes back. On a phone
// the rooms are a drawer. The join form goes to the lowercased room and
// refuses a bad name; "leave" takes the room out of the sidebar and off the
// stream.
func TestBrowserRoomsUnread(t *testing.T) {
	a, b := startRoomsServers(t)
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(a.URL, "/r/ops", "alice")
	alice.openRoom(a.URL, "/r/dev", "dev")

	links := pageEval[[]string](alice, `[...document.querySelectorAll("#joined li")].map((li) => li.dataset.room + " " + li.querySelector("a").getAttribute("href"))`)
	if want := []string{"chat /", "dev /r/dev", "ops /r/ops"}; !slices.Equal(links, want) {
		t.Errorf("alice's sidebar lists %q, want %q", links, want)
	}

	bob := login(t, b.URL, "bob")
	post := func(room, text string) {
		t.Helper()
		path := "/r/" + room + "/post"
		if room == "chat" {
			path = "/post"
		}
		if resp := bob.postForm(path, url.Values{"message": {text}}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("bob posts %q in %s: status %d: %s", text, room, resp.StatusCode, resp.body)
		}
	}
	for _, room := range []string{"ops", "dev"} {
		if resp := bob.get("/r/" + room); resp.StatusCode != http.StatusOK {
			t.Fatalf("bob opens %s: status %d", room, resp.StatusCode)
		}
	}
	post("ops", "ops one")
	post("ops", "ops two")
	post("dev", "dev one")
	alice.waitFor("ops counts 2 unread, dev's message is shown", badgesAre("chat:", "dev:", "ops:2")+
		` && [...document.querySelectorAll("#messages .text")].some((e) => e.textContent === "dev one")`)
	if got := shownTexts(alice); !slices.Equal(got, []string{"dev one"}) {
		t.Errorf("alice's dev page shows %q, want only dev's message", got)
	}
	var opsReceived []string
	for _, m := range receivedEvents[roomMessage](alice, "message") {
		if m.Room == "ops" {
			opsReceived = append(opsReceived, m.Text)
		}
	}
	if !slices.Equal(opsReceived, []string{"ops one", "ops two"}) {
		t.Errorf("alice's stream carried %q for ops, want both of bob's messages", opsReceived)
	}

	// Opening ops shows its messages and clears its count; a message in
	// dev meanwhile is counted on dev and not shown in ops.
	alice.clickRoom("ops")
	if got := sidebarBadges(alice); !slices.Equal(got, []string{"chat:", "dev:", "ops:"}) {
		t.Errorf("alice's sidebar on ops shows %q, want no counts", got)
	}
	if got := shownTexts(alice); !slices.Equal(got, []string{"ops one", "ops two"}) {
		t.Errorf("alice's ops page shows %q, want ops's two messages", got)
	}
	post("dev", "dev two")
	alice.waitFor("dev counts 1 unread", badgesAre("chat:", "dev:1", "ops:"))
	if got := shownTexts(alice); !slices.Equal(got, []string{"ops one", "ops two"}) {
		t.Errorf("alice's ops page shows %q after a message in dev", got)
	}
	// The count goes along to another room's page, until dev is opened.
	alice.clickRoom("chat")
	if got := sidebarBadges(alice); !slices.Equal(got, []string{"chat:", "dev:1", "ops:"}) {
		t.Errorf("on chat alice's sidebar shows %q, want dev's count kept", got)
	}
	alice.clickRoom("dev")
	if got := sidebarBadges(alice); !slices.Equal(got, []string{"chat:", "dev:", "ops:"}) {
		t.Errorf("back in dev alice's sidebar shows %q, want no counts (ops was read)", got)
	}
	if got := shownTexts(alice); !slices.Equal(got, []string{"dev one", "dev two"}) {
		t.Errorf("alice's dev page shows %q, want dev's two messages", got)
	}

	// On a phone the rooms are a drawer behind a button, which shows the
	// total unread count.
	alice.do("phone-sized window", chromedp.EmulateViewport(360, 640))
	const drawerOpen = `(() => {
		const r = document.getElementById("sidebar").getBoundingClientRect();
		return getComputedStyle(document.getElementById("sidebar")).visibility === "visible" && r.left >= 0 && r.right <= innerWidth && r.width > 200;
	})()`
	const drawerClosed = `(() => {
		const r = document.getElementById("sidebar").getBoundingClientRect();
		return getComputedStyle(document.getElementById("sidebar")).visibility === "hidden" || r.right <= 0;
	})()`
	alice.waitFor("the drawer is closed", drawerClosed+` && document.getElementById("rooms-toggle").offsetParent !== null`)
	post("ops", "ops three")
	alice.waitFor("the Rooms button counts 1 unread", `document.getElementById("unread-total").textContent === "1" && document.getElementById("unread-total").offsetParent !== null`)
	alice.do("open the drawer", chromedp.Click(chromedp.ID("rooms-toggle")))
	alice.waitFor("the drawer is open", drawerOpen)
	saveRoomsScreenshot(t, alice, "rooms-phone.png")
	if wide := pageEval[bool](alice, `document.documentElement.scrollWidth > innerWidth`); wide {
		t.Errorf("the phone page scrolls sideways")
	}
	alice.do("close the drawer: tap beside it", chromedp.MouseClickXY(350, 320))
	alice.waitFor("the drawer is closed again", drawerClosed)
	alice.do("desktop-sized window", chromedp.EmulateViewport(viewportW, viewportH))

	// The join form: a bad name is refused on the page, a good one is
	// lowercased and opened.
	alice.do("type a bad room name", chromedp.SendKeys(chromedp.ID("join-name"), "no spaces!"))
	alice.do("submit it", chromedp.Click(chromedp.CSS(`#join button[type="submit"]`)))
	alice.waitFor("the bad name is refused", `!document.getElementById("join-error").hidden && location.pathname === "/r/dev"`)
	pageEval[chromedp.Void](alice, `document.getElementById("join-name").value = ""`)
	alice.do("type a room name", chromedp.SendKeys(chromedp.ID("join-name"), "QA_Team"))
	ctx, cancel := context.WithTimeout(alice.ctx, browserWait)
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#join button[type="submit"]`)))
	cancel()
	if err != nil || resp.URL != a.URL+"/r/qa_team" || resp.Status != http.StatusOK {
		t.Fatalf("the join form for QA_Team: %v %+v, want 200 %s/r/qa_team", err, resp, a.URL)
	}
	alice.checkRoomPage("qa_team")

	// Leaving: back to the default room, without qa_team in the sidebar or
	// on the stream.
	ctx, cancel = context.WithTimeout(alice.ctx, browserWait)
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#leave button[type="submit"]`)))
	cancel()
	if err != nil || resp.URL != a.URL+"/" || resp.Status != http.StatusOK {
		t.Fatalf("leave qa_team: %v %+v, want 200 %s/", err, resp, a.URL)
	}
	alice.checkRoomPage("chat")
	if rooms := pageEval[[]string](alice, `[...document.querySelectorAll("#joined li")].map((li) => li.dataset.room)`); slices.Contains(rooms, "qa_team") {
		t.Errorf("after leaving qa_team alice's sidebar still lists it: %q", rooms)
	}
	if resp := bob.get("/r/qa_team"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob opens qa_team: status %d", resp.StatusCode)
	}
	post("qa_team", "nobody here reads this")
	post("chat", "after alice left qa_team")
	alice.waitLastMessage("bob", "after alice left qa_team")
	for _, m := range receivedEvents[roomMessage](alice, "message") {
		if m.Room == "qa_team" {
			t.Errorf("alice's stream still carries qa_team after she left it: %q", m.Text)
		}
	}
	checkNoPageProblems(t, alice)
}

// TestBrowserRoomsFirstStreamFromPage: the page's first stream starts
// where the page was rendered, in every joined room (body data-position):
// what is posted in any of them between the page and its stream arrives
// once, shown in the open room and counted in the others. The stream is
// held back by blocking /stream in the browser until the posts are in.
func TestBrowserRoomsFirstStreamFromPage(t *testing.T) {
	rs := redistest.Start(t)
	srv := startProcess(t, rs.URL(), "127.0.0.1:0", roomsServerFlags()...)
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(srv.URL, "/r/ops", "alice")
	alice.openRoom(srv.URL, "/r/dev", "dev")

	block := func(patterns ...string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			p := network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{}}
			for _, u := range patterns {
				p.URLPatterns = append(p.URLPatterns, &network.BlockPattern{URLPattern: u, Block: true})
			}
			_, err := cdp.Call(ctx, tg, network.SetBlockedURLs, p)
			return err
		})
	}
	alice.do("block /stream", block(srv.URL+"/stream*"))
	alice.do("reload dev", chromedp.Navigate(srv.URL+"/r/dev"))
	alice.waitFor("the blocked stream is retried", `document.getElementById("status").classList.contains("reconnecting")`)
	if n := pageEval[int](alice, `window.chatReceived.length`); n != 0 {
		t.Fatalf("alice's page received %d events through a blocked stream", n)
	}

	bob := login(t, srv.URL, "bob")
	for _, p := range []struct{ room, path, text string }{
		{"ops", "/r/ops/post", "ops meanwhile"},
		{"dev", "/r/dev/post", "dev meanwhile"},
		{"chat", "/post", "chat meanwhile"},
	} {
		if p.room != "chat" {
			if resp := bob.get("/r/" + p.room); resp.StatusCode != http.StatusOK {
				t.Fatalf("bob opens %s: status %d", p.room, resp.StatusCode)
			}
		}
		if resp := bob.postForm(p.path, url.Values{"message": {p.text}}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("bob posts in %s: status %d: %s", p.room, resp.StatusCode, resp.body)
		}
	}
	alice.do("unblock /stream", block())
	alice.waitFor("dev's message shown, the others counted", badgesAre("chat:1", "dev:", "ops:1")+
		` && [...document.querySelectorAll("#messages .text")].some((e) => e.textContent === "dev meanwhile")`)
	var got []string
	for _, m := range receivedEvents[roomMessage](alice, "message") {
		got = append(got, m.Room+": "+m.Text)
	}
	slices.Sort(got)
	if want := []string{"chat: chat meanwhile", "dev: dev meanwhile", "ops: ops meanwhile"}; !slices.Equal(got, want) {
		t.Errorf("alice's stream brought %q, want each message of the three rooms once: %q", got, want)
	}
	if got := shownTexts(alice); !slices.Equal(got, []string{"dev meanwhile"}) {
		t.Errorf("alice's dev page shows %q", got)
	}
}

// saveRoomsScreenshot saves the tab's viewport as name into $SCREENSHOT_DIR,
// or else into the test's temporary directory (a test run never rewrites a
// tracked file).
func saveRoomsScreenshot(t *testing.T, b *browserTab, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
