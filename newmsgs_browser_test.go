package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// The browser tests of "know what is new" (issue 10, item 2): the "New
// messages" line and the jump button, the unread count in the title and
// the favicon while the tab is hidden, @mentions of me, desktop
// notifications of them, and what is announced to screen readers. Other
// people post over HTTP (login, post), so nothing but what is posted
// reaches the page.

// setMinimized minimizes the tab's window (the page is then really hidden:
// document.visibilityState "hidden", a visibilitychange event), or restores
// it, and waits until the page says so.
func (b *browserTab) setMinimized(minimized bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	w, err := chromedp.CallBrowser(ctx, browser.GetWindowForTarget, browser.GetWindowForTargetParams{TargetID: chromedp.FromContext(b.ctx).Target.TargetID})
	if err != nil {
		b.t.Fatalf("%s: the tab's window: %v", b.name, err)
	}
	state, want := browser.WindowStateNormal, "visible"
	if minimized {
		state, want = browser.WindowStateMinimized, "hidden"
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetWindowBounds, browser.SetWindowBoundsParams{WindowID: w.WindowID, Bounds: &browser.Bounds{WindowState: state}}); err != nil {
		b.t.Fatalf("%s: set the window %s: %v", b.name, state, err)
	}
	b.waitFor("the page is "+want, `document.visibilityState === `+jsLiteral(want))
}

// addScriptOnLoad runs js in every document the tab loads from now on,
// before the page's own scripts.
func (b *browserTab) addScriptOnLoad(js string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		b.t.Fatalf("%s: add a script: %v", b.name, err)
	}
}

// scrollListTo sets #messages' scrollTop (an expression of list) and waits
// for the scroll event to have been handled.
func (b *browserTab) scrollListTo(expr string) {
	b.t.Helper()
	pageAwait[bool](b, `new Promise((done) => {
		const list = document.getElementById("messages");
		const before = list.scrollTop;
		list.addEventListener("scroll", () => setTimeout(() => done(true)), { once: true });
		list.scrollTop = `+expr+`;
		if (list.scrollTop === before) done(false); // nowhere to go: no scroll event comes
	})`)
}

// newMessagesState is what the page shows of what is new.
type newMessagesState struct {
	Lines      int    `json:"lines"`      // "New messages" lines in the list
	Before     string `json:"before"`     // text of the message just after the line
	JumpShown  bool   `json:"jumpShown"`  // the jump button is on screen
	JumpText   string `json:"jumpText"`   // its label
	AtBottom   bool   `json:"atBottom"`   // the newest message is in the list's view
	ScrollTop  int    `json:"scrollTop"`  // the list's scroll position
	Title      string `json:"title"`      // document.title
	Favicon    string `json:"favicon"`    // the icon link's href attribute
	Visibility string `json:"visibility"` // document.visibilityState
}

const newMessagesStateJS = `(() => {
	const list = document.getElementById("messages");
	const lines = list.querySelectorAll("li.new-line");
	const next = lines.length ? lines[0].nextElementSibling : null;
	const jump = document.getElementById("jump");
	const last = [...list.querySelectorAll("li.msg")].pop();
	const l = list.getBoundingClientRect();
	return {
		lines: lines.length,
		before: next ? next.querySelector(".text")?.textContent ?? "" : "",
		jumpShown: !jump.hidden && jump.offsetParent !== null,
		jumpText: jump.textContent,
		atBottom: !!last && last.getBoundingClientRect().bottom <= l.bottom + 1,
		scrollTop: Math.round(list.scrollTop),
		title: document.title,
		favicon: document.querySelector('link[rel~="icon"]').getAttribute("href"),
		visibility: document.visibilityState,
	};
})()`

func (b *browserTab) newMessages() newMessagesState {
	b.t.Helper()
	return pageEval[newMessagesState](b, newMessagesStateJS)
}

// TestBrowserNewMessagesLine: alice reads the middle of a long room while
// bob posts: the list does not move, a "New messages" line appears before
// the first of bob's messages and a "Jump to newest (N new)" button counts
// them; the button works from the keyboard (focusable, with a visible
// focus ring) and takes her to the newest; the line stays while she is at
// the bottom, moves to the next message that comes while she is scrolled
// up again (without moving what she reads), and goes once she sends.
func TestBrowserNewMessagesLine(t *testing.T) {
	rs := redistest.Start(t)
	fillRoom(t, rs, "chat", numberedTexts("old", 60))
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	br := startBrowser(t)
	alice := newBrowserTab(t, br, "alice")
	alice.loginThroughForm(srv.URL, "alice")
	alice.waitFor("status shows connected", pageConnectedJS)

	s := alice.newMessages()
	if s.Lines != 0 || s.JumpShown || !s.AtBottom {
		t.Fatalf("a fresh page: %+v, want at the bottom, no line, no jump button", s)
	}
	// At the bottom, a message is simply shown: no line, no button.
	bob.post("live at the bottom")
	alice.waitLastMessage("bob", "live at the bottom")
	if s := alice.newMessages(); s.Lines != 0 || s.JumpShown || !s.AtBottom {
		t.Errorf("a message while at the bottom: %+v, want at the bottom, no line, no jump button", s)
	}

	// Scrolled up into the middle: the button shows at once, without a count.
	alice.scrollListTo(`list.scrollHeight / 2`)
	up := alice.newMessages()
	if !up.JumpShown || up.JumpText != "Jump to newest" || up.AtBottom {
		t.Fatalf("scrolled up: %+v, want the jump button without a count", up)
	}
	for i := 1; i <= 3; i++ {
		bob.post(fmt.Sprintf("while alice reads %d", i))
	}
	alice.waitLastMessage("bob", "while alice reads 3")
	alice.waitFor("the button counts 3", `document.getElementById("jump").textContent === "Jump to newest (3 new)"`)
	s = alice.newMessages()
	if s.Lines != 1 || s.Before != "while alice reads 1" {
		t.Errorf("after 3 messages while scrolled up: %d lines, before %q; want one, before the first of them", s.Lines, s.Before)
	}
	if s.ScrollTop != up.ScrollTop {
		t.Errorf("the list moved from %d to %d while alice was reading above", up.ScrollTop, s.ScrollTop)
	}
	// Nor does someone joining the room.
	carol := login(t, srv.URL, "carol").openStream("", "")
	defer carol.Close()
	alice.waitFor("carol's join shown", noticeShown("carol joined"))
	if s := alice.newMessages(); s.ScrollTop != up.ScrollTop {
		t.Errorf("a join notice moved the list from %d to %d while alice was reading above", up.ScrollTop, s.ScrollTop)
	}

	// The button by keyboard: Tab-reachable (a button), focused it has a
	// visible outline, and Enter takes her to the newest.
	pageEval[chromedp.Void](alice, `document.getElementById("in").focus()`)
	alice.pressKey("Tab", "Tab", 9, 8 /* Shift */) // from the message box back to the button
	focus := pageEval[[]string](alice, `[document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle, getComputedStyle(document.activeElement).outlineWidth]`)
	if focus[0] != "jump" || focus[1] == "none" || focus[2] == "0px" {
		t.Fatalf("Shift+Tab from the message box focuses %q with outline %s %s, want the jump button with a visible outline", focus[0], focus[1], focus[2])
	}
	alice.pressKey("Enter", "Enter", 13, 0)
	alice.waitFor("at the newest, the button gone", `(() => {
		const s = `+newMessagesStateJS+`;
		return s.atBottom && !s.jumpShown;
	})()`)
	if s := alice.newMessages(); s.Lines != 1 || s.Before != "while alice reads 1" {
		t.Errorf("at the bottom after the jump: %d lines before %q; want the line to stay before the first new one", s.Lines, s.Before)
	}

	// Seen, at the bottom: new messages do not move the line.
	// Enough of them (grouped, each is one short line) that the line can
	// later be scrolled out of view above.
	for i := 1; i <= 30; i++ {
		bob.post(fmt.Sprintf("seen live %d", i))
	}
	alice.waitLastMessage("bob", "seen live 30")
	if s := alice.newMessages(); s.Lines != 1 || s.Before != "while alice reads 1" || !s.AtBottom || s.JumpShown {
		t.Errorf("messages while at the bottom after the line was seen: %+v, want the line unmoved, at the bottom", s)
	}

	// Scrolled up again, the line just above the view: the next message
	// moves the line to itself, and what alice reads stays where it is.
	alice.scrollListTo(`list.scrollTop + document.querySelector("#messages li.new-line").getBoundingClientRect().bottom - list.getBoundingClientRect().top + 50`)
	if s := alice.newMessages(); s.AtBottom || !s.JumpShown {
		t.Fatalf("scrolled to just below the line: %+v, want away from the bottom", s)
	}
	top := pageEval[listTop](alice, topOfListJS)
	bob.post("after the second look")
	alice.waitLastMessage("bob", "after the second look")
	alice.waitFor("the button counts 1", `document.getElementById("jump").textContent === "Jump to newest (1 new)"`)
	if s := alice.newMessages(); s.Lines != 1 || s.Before != "after the second look" {
		t.Errorf("a message while scrolled up after the line was seen: %d lines before %q, want it moved before the new one", s.Lines, s.Before)
	}
	after := pageEval[listTop](alice, `(() => {
		const list = document.getElementById("messages");
		const li = document.querySelector('#messages li.msg[data-id="`+top.ID+`"]');
		return { id: li.dataset.id, offset: li.getBoundingClientRect().top - list.getBoundingClientRect().top };
	})()`)
	if d := after.Offset - top.Offset; d > 2 || d < -2 {
		t.Errorf("moving the line moved what alice reads (%s) by %.0f px", top.ID, d)
	}

	// Her own message takes her to the bottom and ends the line.
	alice.typeAndSend("I am back")
	alice.waitLastMessage("alice", "I am back")
	alice.waitFor("at the newest, no line, no button", `(() => {
		const s = `+newMessagesStateJS+`;
		return s.atBottom && !s.jumpShown && s.lines === 0;
	})()`)
	checkNoPageProblems(t, alice)
}

// pressKey presses one key (with modifiers) in the focused element.
func (b *browserTab) pressKey(key, code string, keyCode int64, modifiers int64) {
	b.t.Helper()
	press := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		text := ""
		if key == "Enter" {
			text = "\r"
		}
		for _, p := range []input.DispatchKeyEventParams{
			{Type: input.DispatchKeyEventTypeKeyDown, Key: key, Code: code, Text: text, UnmodifiedText: text,
				WindowsVirtualKeyCode: keyCode, NativeVirtualKeyCode: keyCode, Modifiers: modifiers},
			{Type: input.DispatchKeyEventTypeKeyUp, Key: key, Code: code,
				WindowsVirtualKeyCode: keyCode, NativeVirtualKeyCode: keyCode, Modifiers: modifiers},
		} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	})
	b.do("press "+key, press)
}

// TestBrowserUnreadWhileHidden: while alice's window is minimized (her
// page really hidden), bob's messages in her room count in the tab title,
// "(N) #dev · Chat", with the other rooms' unread, and the favicon becomes
// the badge one; a "New messages" line marks the first of them although the
// list stayed at the bottom. Coming back clears this room's count: title
// and favicon are as before when nothing else is unread, and keep the
// other rooms' count when something is.
func TestBrowserUnreadWhileHidden(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	if r := bob.postForm("/r/dev/join", url.Values{}); r.StatusCode != 204 {
		t.Fatalf("bob joins dev: %d %s", r.StatusCode, r.body)
	}
	postIn := func(room, text string) {
		t.Helper()
		path := "/r/" + room + "/post"
		if room == "chat" {
			path = "/post"
		}
		if r := bob.postForm(path, url.Values{"message": {text}}); r.StatusCode != 204 {
			t.Fatalf("post %q in %s: %d %s", text, room, r.StatusCode, r.body)
		}
	}
	br := startBrowser(t)
	alice := newBrowserTab(t, br, "alice")
	alice.loginInto(srv.URL, "/r/dev", "alice") // joined: chat (by the login) and dev

	const plain, badge = "/static/favicon.svg", "/static/favicon-unread.svg"
	if s := alice.newMessages(); s.Title != "#dev · Chat" || s.Favicon != plain || s.Visibility != "visible" {
		t.Fatalf("a fresh page: %+v", s)
	}
	// Visible: a message in the room is read, not counted.
	postIn("dev", "while she looks")
	alice.waitLastMessage("bob", "while she looks")
	if s := alice.newMessages(); s.Title != "#dev · Chat" || s.Favicon != plain || s.Lines != 0 {
		t.Errorf("a message while visible: %+v, want no count, no line", s)
	}

	alice.setMinimized(true)
	postIn("dev", "hidden 1")
	postIn("dev", "hidden 2")
	alice.waitFor("the title counts 2", `document.title === "(2) #dev · Chat"`)
	s := alice.newMessages()
	if s.Favicon != badge || s.Lines != 1 || s.Before != "hidden 1" || !s.AtBottom {
		t.Errorf("2 messages while hidden: %+v, want the badge favicon, a line before the first, at the bottom", s)
	}
	// Another joined room's messages add to it.
	postIn("chat", "in the other room")
	alice.waitFor("the title counts 3", `document.title === "(3) #dev · Chat"`)

	// Back: this room's count is cleared, the other room's stays.
	alice.setMinimized(false)
	alice.waitFor("the title counts the other room only", `document.title === "(1) #dev · Chat"`)
	if s := alice.newMessages(); s.Favicon != badge || s.Lines != 1 || s.Before != "hidden 1" {
		t.Errorf("visible again with another room unread: %+v, want the badge favicon and the line kept", s)
	}

	// Nothing else unread: title and favicon as they were. Opening chat
	// and coming back reads the other room.
	alice.clickRoom("chat")
	alice.clickRoom("dev")
	if s := alice.newMessages(); s.Title != "#dev · Chat" || s.Favicon != plain {
		t.Fatalf("after reading the other room: %+v, want no count", s)
	}
	alice.setMinimized(true)
	postIn("dev", "hidden again")
	alice.waitFor("the title counts 1", `document.title === "(1) #dev · Chat"`)
	if s := alice.newMessages(); s.Favicon != badge || s.Lines != 1 || s.Before != "hidden again" {
		t.Errorf("1 message while hidden: %+v, want the badge favicon and a line before it", s)
	}
	alice.setMinimized(false)
	alice.waitFor("the title without a count", `document.title === "#dev · Chat"`)
	if s := alice.newMessages(); s.Favicon != plain {
		t.Errorf("visible again with nothing unread: favicon %q, want %q", s.Favicon, plain)
	}
	// Seen now: the next hidden message moves the line to itself.
	alice.setMinimized(true)
	postIn("dev", "hidden a third time")
	alice.waitFor("the title counts 1", `document.title === "(1) #dev · Chat"`)
	if s := alice.newMessages(); s.Lines != 1 || s.Before != "hidden a third time" {
		t.Errorf("after the line was seen, a hidden message: %d lines before %q, want it moved", s.Lines, s.Before)
	}
	alice.setMinimized(false)
	checkNoPageProblems(t, alice)
}

// mentionedJS lists the texts of the messages marked as mentioning me.
const mentionedJS = `[...document.querySelectorAll("#messages li.msg.mention .text")].map((e) => e.textContent)`

// TestBrowserMentionsAndAnnouncements: messages that @mention alice (any
// case, at a word boundary) are marked and coloured, whether the server
// rendered them, scroll-back loaded them or they came live; others
// ("@alicex", "bob@alice.com", her own) are not. The live region announces
// each live message of others as "user: text", never the history (the page's
// own, or scroll-back's). axe-core finds no violation, contrast included,
// in light and dark with a mention, the line and the jump button shown.
func TestBrowserMentionsAndAnnouncements(t *testing.T) {
	axe := axeSource(t)
	rs := redistest.Start(t)
	texts := numberedTexts("old", 60)
	// Loaded by scroll-back (the page renders the newest 50).
	texts[2] = "early @alice: are you there?"
	texts[3] = "early @alicex is someone else"
	// Rendered by the server.
	texts[51] = "hi @Alice, look at this"
	texts[52] = "@ALICE at the start"
	texts[53] = "mail bob@alice.com please"
	texts[54] = "@alicex is not her"
	texts[55] = "**@alice** in bold"
	texts[56] = "first line\n@alice on the second"
	texts[57] = "@alice_b has an underscore"
	texts[58] = "email@alice"
	fillRoom(t, rs, "chat", texts)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	br := startBrowser(t)
	alice := newBrowserTab(t, br, "alice")
	alice.loginThroughForm(srv.URL, "alice")
	alice.waitFor("status shows connected", pageConnectedJS)

	rendered := []string{"hi @Alice, look at this", "@ALICE at the start", "@alice in bold", "first line\n@alice on the second"}
	if got := pageEval[[]string](alice, mentionedJS); !slices.Equal(got, rendered) {
		t.Errorf("server-rendered mentions marked: %q, want %q", got, rendered)
	}
	if live := pageEval[string](alice, `document.getElementById("messages").getAttribute("aria-live") ?? "none"`); live != "none" {
		t.Errorf("#messages has aria-live=%q: every history load would be read out", live)
	}

	// Scroll-back: the older page's mention is marked too.
	pageEval[chromedp.Void](alice, `document.getElementById("messages").scrollTop = 0`)
	alice.waitFor("the older page loaded", `!!document.querySelector("#messages li.history-start")`)
	if got := pageEval[[]string](alice, mentionedJS); !slices.Equal(got, append([]string{"early @alice: are you there?"}, rendered...)) {
		t.Errorf("after scroll-back, mentions marked: %q", got)
	}
	if got := pageEval[string](alice, `document.getElementById("announce").textContent`); got != "" {
		t.Errorf("the live region announced history: %q", got)
	}

	// Live.
	pageEval[chromedp.Void](alice, `document.getElementById("messages").scrollTop = 1e9`)
	bob.post("hello @alice!")
	bob.post("not for you, @alicea")
	alice.waitLastMessage("bob", "not for you, @alicea")
	alice.typeAndSend("note to self @alice")
	alice.waitLastMessage("alice", "note to self @alice")
	if got := pageEval[[]string](alice, mentionedJS); !slices.Equal(got, append([]string{"early @alice: are you there?"}, append(rendered, "hello @alice!")...)) {
		t.Errorf("after live messages, mentions marked: %q", got)
	}
	announced := pageEval[[]string](alice, `[...document.getElementById("announce").children].map((p) => p.textContent)`)
	if want := []string{"bob: hello @alice!", "bob: not for you, @alicea"}; !slices.Equal(announced, want) {
		t.Errorf("announced %q, want %q (others' live messages only)", announced, want)
	}
	if live := pageEval[string](alice, `document.getElementById("announce").getAttribute("aria-live")`); live != "polite" {
		t.Errorf("the announce region is aria-live=%q, want polite", live)
	}

	// A mention looks different from a message, in both themes, and
	// everything passes axe-core with the line and the jump button shown.
	alice.scrollListTo(`list.scrollHeight - list.clientHeight - 250`)
	bob.post("something new @alice")
	alice.waitFor("the line and the button", `!!document.querySelector("#messages li.new-line") && !document.getElementById("jump").hidden`)
	for _, scheme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(alice.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
			t.Fatalf("emulate %s: %v", scheme, err)
		}
		bgs := pageEval[[]string](alice, `["li.msg.mention", "li.msg:not(.mention):not(.own)"].map((s) => getComputedStyle(document.querySelector("#messages " + s)).backgroundColor)`)
		if bgs[0] == bgs[1] {
			t.Errorf("%s: a mention has the background of any message (%s)", scheme, bgs[0])
		}
		if v := alice.axeViolations(axe); len(v) > 0 {
			t.Errorf("%s theme: %d violations:\n%s", scheme, len(v), strings.Join(v, "\n"))
		}
	}
	checkNoPageProblems(t, alice)
}

// notificationSpy wraps window.Notification before the page loads: it
// records every notification made (window.testNotes) and every permission
// request (window.testAsked), and passes both to the real API.
const notificationSpy = `(() => {
	const Real = window.Notification;
	if (typeof Real !== "function") return;
	window.testNotes = [];
	window.testAsked = 0;
	function Spy(title, options) {
		const note = { title, body: options && options.body, tag: options && options.tag, made: false };
		window.testNotes.push(note);
		const n = new Real(title, options);
		note.made = true;
		note.n = n;
		return n;
	}
	Spy.prototype = Real.prototype;
	Object.defineProperty(Spy, "permission", { get: () => Real.permission });
	Spy.requestPermission = (...args) => {
		window.testAsked++;
		return Real.requestPermission(...args);
	};
	window.Notification = Spy;
})()`

const notesJS = `window.testNotes.map((n) => n.title + " | " + n.body + " | " + n.tag)`

// TestBrowserMentionNotification: the page never asks for the notification
// permission on load; the sidebar's "Notify me of mentions" asks on a click
// (the permission granted through the DevTools protocol), and is remembered.
// Then a mention of alice while her window is minimized shows one
// notification "bob in #chat" with the message's text and ID; a message
// without a mention, and her own mention from elsewhere, show none;
// clicking the notification focuses her page's message. Without the
// Notification API the control is not shown.
func TestBrowserMentionNotification(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	bob := login(t, srv.URL, "bob")
	aliceElsewhere := login(t, srv.URL, "alice") // her own messages, from another client
	br := startBrowser(t)
	alice := newBrowserTab(t, br, "alice")
	alice.addScriptOnLoad(notificationSpy)
	if _, err := chromedp.CallBrowser(alice.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted,
		Origin: srv.URL, BrowserContextID: chromedp.FromContext(alice.ctx).BrowserContextID}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	alice.loginThroughForm(srv.URL, "alice")
	alice.waitFor("status shows connected", pageConnectedJS)

	state := func() []string {
		return pageEval[[]string](alice, `[String(window.testAsked), Notification.permission, String(document.getElementById("notify").hidden),
			document.getElementById("notify").getAttribute("aria-pressed"), localStorage.getItem("chat.notify") ?? "unset"]`)
	}
	if got, want := state(), []string{"0", "granted", "false", "false", "unset"}; !slices.Equal(got, want) {
		t.Fatalf("after load (asked, permission, control hidden, pressed, stored) = %q, want %q", got, want)
	}
	// Not asked for: a mention while hidden shows nothing.
	alice.setMinimized(true)
	bob.post("@alice before you asked")
	alice.waitLastMessage("bob", "@alice before you asked")
	alice.setMinimized(false)
	if n := pageEval[int](alice, `window.testNotes.length`); n != 0 {
		t.Errorf("%d notifications before the user asked for them", n)
	}

	alice.do("click the control", chromedp.Click(chromedp.ID("notify")))
	alice.waitFor("the control on", `document.getElementById("notify").getAttribute("aria-pressed") === "true"`)
	if got, want := state(), []string{"1", "granted", "false", "true", "on"}; !slices.Equal(got, want) {
		t.Fatalf("after the click (asked, permission, control hidden, pressed, stored) = %q, want %q", got, want)
	}
	// Remembered, and still not asked on load.
	alice.do("reload", chromedp.Reload())
	alice.waitFor("status shows connected", pageConnectedJS)
	if got, want := state(), []string{"0", "granted", "false", "true", "on"}; !slices.Equal(got, want) {
		t.Fatalf("after a reload (asked, permission, control hidden, pressed, stored) = %q, want %q", got, want)
	}

	// On the page, focused, she sees it: no notification.
	if !pageEval[bool](alice, `document.visibilityState === "visible" && document.hasFocus()`) {
		t.Fatalf("alice's page is not visible and focused")
	}
	bob.post("@alice while you look")
	alice.waitLastMessage("bob", "@alice while you look")

	alice.setMinimized(true)
	bob.post("nothing for alice here")
	aliceElsewhere.post("@alice a note to myself")
	long := strings.TrimSpace("@alice " + strings.Repeat("long words ", 30))
	bob.post(long)
	alice.waitLastMessage("bob", long)
	id := pageEval[string](alice, `[...document.querySelectorAll("#messages li.msg")].pop().dataset.id`)
	alice.waitFor("a notification", `window.testNotes.length > 0`)
	wantBody := long[:139] + "…"
	if got, want := pageEval[[]string](alice, notesJS), []string{"bob in #chat | " + wantBody + " | " + id}; !slices.Equal(got, want) {
		t.Errorf("notifications: %q, want %q", got, want)
	}
	if !pageEval[bool](alice, `window.testNotes[0].made`) {
		t.Fatalf("the real Notification constructor refused: %s", alice.describe())
	}

	// Its click brings the message into view and focuses it.
	alice.setMinimized(false)
	pageEval[chromedp.Void](alice, `(document.getElementById("in").focus(), window.testNotes[0].n.dispatchEvent(new Event("click")))`)
	alice.waitFor("the message focused", `document.activeElement.id === "m-`+id+`"`)
	checkNoPageProblems(t, alice)

	// Without the API: no control.
	bare := newBrowserTab(t, br, "carol")
	bare.addScriptOnLoad(`delete window.Notification`)
	bare.loginThroughForm(srv.URL, "carol")
	bare.waitFor("status shows connected", pageConnectedJS)
	if got := pageEval[[]bool](bare, `[typeof window.Notification === "undefined", document.getElementById("notify").hidden]`); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("without Notification (API missing, control hidden) = %v", got)
	}
	checkNoPageProblems(t, bare)
}
