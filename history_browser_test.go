package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// topOfList is the first message at the top of #messages' view and how far
// below the list's top edge it is, in pixels.
const topOfListJS = `(() => {
	const list = document.getElementById("messages");
	const top = list.getBoundingClientRect().top;
	for (const li of list.querySelectorAll("li.msg")) {
		const r = li.getBoundingClientRect();
		if (r.bottom > top) return { id: li.dataset.id, offset: r.top - top };
	}
	return { id: "", offset: 0 };
})()`

type listTop struct {
	ID     string  `json:"id"`
	Offset float64 `json:"offset"`
}

// TestBrowserScrollBack: in a room of 260 kept messages, scrolling to the
// top of the list again and again loads the older pages until the first
// message and a "beginning of the history" line are shown; every message is
// there once, in order; each load keeps what was at the top exactly where
// it was; back at the bottom the room is live. Then a search finds an old
// message and its link shows it.
func TestBrowserScrollBack(t *testing.T) {
	rs := redistest.Start(t)
	texts := numberedTexts("old", 260)
	texts[17] = "the Zebra crossing"
	texts[3] = "old-003 **bold**" // loaded by scroll-back: formatted as live messages are
	ids := fillRoom(t, rs, "dev", texts)
	srv := startProcess(t, rs.URL(), "127.0.0.1:0")
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	alice.loginInto(srv.URL, "/r/dev", "alice")

	if n := pageEval[int](alice, `document.querySelectorAll("#messages li.msg").length`); n != 50 {
		t.Fatalf("the page renders %d messages, want 50", n)
	}
	loads := 0
	for !pageEval[bool](alice, `!!document.querySelector("#messages li.history-start")`) {
		if loads++; loads > 10 {
			t.Fatalf("no beginning of the history after %d loads\n%s", loads, alice.describe())
		}
		before := pageEval[int](alice, `document.querySelectorAll("#messages li.msg").length`)
		// A person's wheel or touch gives many scroll events at the top,
		// not one: three of them, at once.
		pageEval[bool](alice, `(() => {
			const list = document.getElementById("messages");
			list.scrollTop = 0;
			for (let i = 0; i < 3; i++) list.dispatchEvent(new Event("scroll"));
			return true;
		})()`)
		top := pageEval[listTop](alice, topOfListJS)
		alice.waitFor("an older page prepended", `document.querySelectorAll("#messages li.msg").length > `+jsJSON(before))
		after := pageEval[listTop](alice, `(() => {
			const list = document.getElementById("messages");
			const li = document.querySelector('#messages li.msg[data-id="`+top.ID+`"]');
			return { id: li.dataset.id, offset: li.getBoundingClientRect().top - list.getBoundingClientRect().top };
		})()`)
		if d := after.Offset - top.Offset; d > 2 || d < -2 {
			t.Fatalf("load %d: the message at the top (%s) moved by %.0f px", loads, top.ID, d)
		}
	}
	if loads != 5 { // 50 rendered, then 50 a page: 210 = 4·50 + 10
		t.Errorf("%d loads, want 5", loads)
	}
	shown := pageEval[[]string](alice, `[...document.querySelectorAll("#messages li.msg")].map((li) => li.dataset.id + " " + li.querySelector(".text").textContent)`)
	if len(shown) != len(ids) {
		t.Fatalf("%d messages shown, want %d", len(shown), len(ids))
	}
	for i, s := range shown {
		want := strings.ReplaceAll(texts[i], "**", "") // the text as shown, formatting aside
		if s != ids[i]+" "+want {
			t.Fatalf("message %d is %q, want %q: lost, doubled or reordered", i, s, ids[i]+" "+want)
		}
	}
	if b := pageEval[string](alice, `(document.querySelector('#messages li[data-id="`+ids[3]+`"] .text strong') || {}).textContent || ""`); b != "bold" {
		t.Errorf("a message loaded by scroll-back is not shown with its server-made HTML (strong %q)", b)
	}
	if !pageEval[bool](alice, `document.querySelector("#messages").firstElementChild.classList.contains("history-start")`) {
		t.Error("the beginning-of-history line is not first")
	}

	// Back down: the newest message is in view and the room is live.
	pageEval[bool](alice, `(document.getElementById("messages").scrollTop = 1e9, true)`)
	alice.typeAndSend("back at the bottom")
	alice.waitLastMessage("alice", "back at the bottom")
	alice.waitFor("the newest message in view", `(() => {
		const list = document.getElementById("messages"), last = list.querySelector("li.msg:last-of-type");
		return last.getBoundingClientRect().bottom <= list.getBoundingClientRect().bottom + 1;
	})()`)
	if n := pageEval[int](alice, `document.querySelectorAll("#messages li.msg").length`); n != 261 {
		t.Errorf("%d messages after one more, want 261", n)
	}

	// Search: the form in the sidebar, the hit's link, the hit in view.
	alice.do("search", chromedp.Navigate(srv.URL+"/r/dev/search?q=zebra"))
	link := pageEval[string](alice, `[...document.querySelectorAll("#hits a")].map((a) => a.getAttribute("href")).join(" ")`)
	if !strings.HasSuffix(link, "#m-"+ids[17]) || strings.Contains(link, " ") {
		t.Fatalf("search hits link to %q, want one hit ending #m-%s", link, ids[17])
	}
	ctx, cancel := context.WithTimeout(alice.ctx, browserWait)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#hits a"))); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the hit shown in the list's view", `(() => {
		const list = document.getElementById("messages"), hit = document.getElementById("m-`+ids[17]+`");
		if (!hit || !document.getElementById("history-view")) return false;
		const l = list.getBoundingClientRect(), r = hit.getBoundingClientRect();
		return r.top >= l.top - 1 && r.bottom <= l.bottom + 1 && hit.textContent.includes("the Zebra crossing");
	})()`)
	// A history view opens no live stream: after a second, still no event
	// and the status says so.
	state := pageAwait[string](alice, `new Promise((done) => setTimeout(() =>
		done(document.getElementById("status").textContent + " | " + window.chatReceived.length), 1000))`)
	if state != "older messages: not live | 0" {
		t.Errorf("the history view: status and events received %q, want no stream", state)
	}
	checkNoPageProblems(t, alice)
}
