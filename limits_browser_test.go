package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// TestBrowserLongMessageCollapses: in real Chromium a long message, both
// server-rendered and live, is shown collapsed with a "Show more" button
// that the keyboard opens (Tab to it, Enter) and closes again; a short one
// has none; message text is clipped to its own box vertically, so stacked
// marks cannot draw over other messages.
func TestBrowserLongMessageCollapses(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0")
	poster := login(t, srv.URL, "poster")
	long := strings.TrimSpace(strings.Repeat("a line of a long message\n", 39))
	poster.post("rendered: " + long)
	browser := startBrowser(t)
	bob := newBrowserTab(t, browser, "bob")
	bob.loginThroughForm(srv.URL, "bob")
	bob.waitFor("status shows connected", pageConnectedJS)
	poster.post("live: " + long)
	poster.post("short")
	bob.waitFor("the live long message and the short one", `document.querySelectorAll("#messages > .msg").length === 3`)

	const state = `(() => [...document.querySelectorAll("#messages > .msg")].map((li) => {
		const t = li.querySelector(".text"), b = li.querySelector(":scope > .more");
		return {button: b ? b.textContent + "/" + b.getAttribute("aria-expanded") : "",
			clipped: t.scrollHeight > t.clientHeight + 1, overflowY: getComputedStyle(t).overflowY};
	}))()`
	type shown struct {
		Button    string `json:"button"`
		Clipped   bool   `json:"clipped"`
		OverflowY string `json:"overflowY"`
	}
	got := pageEval[[]shown](bob, state)
	want := []shown{{"Show more/false", true, "clip"}, {"Show more/false", true, "clip"}, {"", false, "clip"}}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("messages shown as %+v, want %+v", got, want)
		}
	}

	// The keyboard: focus the live message's button (as Tab does) and press Enter.
	enter := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, p := range []input.DispatchKeyEventParams{
			{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", Text: "\r", UnmodifiedText: "\r",
				WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13},
			{Type: input.DispatchKeyEventTypeKeyUp, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13},
		} {
			if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	})
	liveID := pageEval[string](bob, `document.querySelectorAll("#messages > .msg")[1].id`)
	liveButton := chromedp.CSS("#" + liveID + " > .more")
	bob.do("open the live message with Enter", chromedp.Focus(liveButton), enter)
	got = pageEval[[]shown](bob, state)
	if got[1] != (shown{"Show less/true", false, "clip"}) || got[0].Button != "Show more/false" {
		t.Fatalf("after Enter on the second message's button: %+v", got)
	}
	bob.do("close it again", chromedp.Focus(liveButton), enter)
	if got = pageEval[[]shown](bob, state); got[1] != want[1] {
		t.Fatalf("after a second Enter: %+v", got[1])
	}
	if p := bob.consoleProblems(); len(p) > 0 {
		t.Fatalf("console problems: %v", p)
	}
}
