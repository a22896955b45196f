package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// loginWithPassword logs the tab in through the form with a password.
func (b *browserTab) loginWithPassword(base, name, password string) {
	b.t.Helper()
	b.do("open the login page", chromedp.Navigate(base+"/login"))
	b.do("type name and password", chromedp.SendKeys(chromedp.ID("user"), name), chromedp.SendKeys(chromedp.ID("password"), password))
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`))); err != nil {
		b.t.Fatalf("%s: submit the login form: %v", b.name, err)
	}
	b.waitFor("the chat page", fmt.Sprintf(`document.getElementById("me")?.textContent === %s`, jsLiteral(name)))
}

// messageID waits for the message text on the page and returns its ID.
func (b *browserTab) messageID(text string) string {
	b.t.Helper()
	find := fmt.Sprintf(`[...document.querySelectorAll("#messages li.msg")].find((li) => li.querySelector(".text")?.textContent === %s)?.dataset.id || ""`, jsLiteral(text))
	b.waitFor("message "+text, find+` !== ""`)
	return pageEval[string](b, find)
}

// replayedJS opens a second stream in the page from last_event_id and
// collects "<type> <data>" of every event before its presence list (the
// replay), then closes it.
func replayedJS(from string) string {
	return fmt.Sprintf(`new Promise((resolve) => {
		const got = [];
		const es = new EventSource("/stream?last_event_id=" + encodeURIComponent(%s));
		for (const t of ["message", "delete", "edit", "notice"]) es.addEventListener(t, (e) => got.push(t + " " + e.data));
		es.addEventListener("presence", () => { es.close(); resolve(got); });
	})`, jsLiteral(from))
}

// TestBrowserModeration: in real Chromium, an author deletes (by keyboard)
// and edits her messages from the message menu; the other user's open page
// loses the deleted one and shows the edit, and neither comes back after a
// reload, a resume from before them or a server restart; the admin's menu
// bans a user, whose open page says so and stops; axe-core finds nothing
// wrong with the controls.
func TestBrowserModeration(t *testing.T) {
	axe := axeSource(t)
	rs := redistest.Start(t)
	addr := browserFreeAddr(t)
	flags := []string{"-rate-posts", "0", "-admins", "root"}
	server := startProcess(t, rs.URL(), addr, flags...)
	base := server.URL

	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	bob := newBrowserTab(t, browser, "bob")
	root := newBrowserTab(t, browser, "root")
	alice.loginThroughForm(base, "alice")
	bob.loginThroughForm(base, "bob")
	root.loginWithPassword(base, "root", "correct horse battery")
	for _, tab := range []*browserTab{alice, bob, root} {
		tab.waitFor("connected", pageConnectedJS)
	}

	bob.typeAndSend("bob was here")
	alice.typeAndSend("oops, wrong window")
	alice.typeAndSend("helo wrold")
	doomed := alice.messageID("oops, wrong window")
	edited := alice.messageID("helo wrold")
	bob.waitLastMessage("alice", "helo wrold")
	bobID := bob.messageID("bob was here")

	// Delete, with the keyboard only: focus the message's actions button,
	// Enter opens its menu (focus on its first item, Edit), Tab to Delete,
	// Enter.
	sel := "#m-" + doomed + " .msg-actions"
	alice.do("open the menu by keyboard", chromedp.Focus(chromedp.CSS(sel)), chromedp.KeyEvent("\r"))
	alice.waitFor("the menu has focus", `document.activeElement?.textContent === "Edit"`)
	if v := alice.axeViolations(axe); len(v) > 0 {
		t.Errorf("alice's page with a message menu open: %d violations:\n%s", len(v), strings.Join(v, "\n"))
	}
	if outline := pageEval[string](alice, `getComputedStyle(document.activeElement).outlineStyle`); outline == "none" {
		t.Errorf("the focused menu item has no visible outline")
	}
	alice.do("Tab to Delete, Enter", chromedp.KeyEvent("\t"), chromedp.KeyEvent("\r"))
	gone := fmt.Sprintf(`!document.getElementById("m-%s")`, doomed)
	bob.waitFor("the deleted message leaves bob's open page", gone)
	alice.waitFor("and alice's", gone)

	// Edit: menu, Edit, new text, Enter.
	alice.do("open the menu", chromedp.Click(chromedp.CSS("#m-"+edited+" .msg-actions")))
	alice.do("choose Edit", chromedp.KeyEvent("\r"))
	alice.waitFor("the editor has focus", `document.activeElement?.tagName === "TEXTAREA"`)
	alice.do("type the new text", chromedp.Evaluate[chromedp.Void](`document.activeElement.value = "hello *world*"`), chromedp.KeyEvent("\r"))
	shownEdited := fmt.Sprintf(`(() => {
		const li = document.getElementById("m-%s");
		return !!li && li.querySelector(".text em")?.textContent === "world" && li.querySelector(".text").textContent === "hello world" && !!li.querySelector(".edited");
	})()`, edited)
	bob.waitFor("the edit shows on bob's page", shownEdited)

	// The admin sees controls on others' messages; axe-core is content.
	root.waitFor("root has controls on bob's message", fmt.Sprintf(`!!document.querySelector("#m-%s .msg-actions")`, bobID))
	if pageEval[bool](bob, fmt.Sprintf(`!!document.querySelector("#m-%s .msg-actions")`, edited)) {
		t.Errorf("bob has controls on alice's message")
	}
	root.do("open the menu on bob's message", chromedp.Click(chromedp.CSS("#m-"+bobID+" .msg-actions")))
	if v := root.axeViolations(axe); len(v) > 0 {
		t.Errorf("the admin's page with a menu open: %d violations:\n%s", len(v), strings.Join(v, "\n"))
	}
	root.do("close it with Escape", chromedp.KeyEvent("\x1b"))
	root.waitFor("Escape closed the menu, focus back on its button", `!document.querySelector(".msg-menu") && document.activeElement?.classList.contains("msg-actions")`)

	// Reload; resume from before both; restart the server, reload again.
	check := func(when string) {
		t.Helper()
		bob.waitFor("bob's page "+when+": no deleted message", gone)
		bob.waitFor("bob's page "+when+": the edit", shownEdited)
	}
	bob.do("reload", chromedp.Reload())
	bob.waitFor("connected after the reload", pageConnectedJS)
	check("after a reload")
	replayed, err := chromedp.Run(bob.ctx, chromedp.Evaluate[[]string](replayedJS("0-0"), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(replayed, "\n")
	if strings.Contains(all, "oops") || !strings.Contains(all, `delete {"room":"chat","id":"`+doomed+`"}`) || !strings.Contains(all, `"text":"hello *world*"`) {
		t.Errorf("a resume from before the messages replayed:\n%s", all)
	}
	server.kill()
	bob.waitFor("bob notices the server is gone", `!document.getElementById("status").classList.contains("connected")`)
	server = startProcess(t, rs.URL(), addr, flags...)
	bob.waitFor("bob reconnects after the restart", pageConnectedJS)
	check("after the server restart, live")
	bob.do("reload", chromedp.Reload())
	check("after the server restart and a reload")

	// The admin bans bob from the menu; bob's open page says so and stays
	// closed; alice's stays connected.
	bob.waitFor("connected", pageConnectedJS)
	root.waitFor("root reconnected", pageConnectedJS)
	root.do("open the menu on bob's message", chromedp.Click(chromedp.CSS("#m-"+bobID+" .msg-actions")))
	root.do("ban bob", chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll(".msg-menu button")].find((b) => b.textContent.startsWith("Ban bob")).click()`))
	bob.waitFor("bob's page says he is banned", `/banned/.test(document.getElementById("status").textContent) && document.getElementById("status").classList.contains("refused")`)
	opens := pageEval[int](bob, `window.chatStreamOpens || 0`)
	// Nothing to wait for here but time: a page that reconnects would do
	// so within the stream's retry (2 s) plus its backoff.
	time.Sleep(4 * time.Second)
	if now := pageEval[int](bob, `window.chatStreamOpens || 0`); now != opens {
		t.Errorf("bob's page opened %d more streams after the ban", now-opens)
	}
	if s := pageEval[string](bob, `document.getElementById("status").textContent`); !strings.Contains(s, "banned") {
		t.Errorf("bob's status after the ban: %q", s)
	}
	if !pageEval[bool](alice, pageConnectedJS) {
		t.Errorf("alice's page was disconnected by bob's ban")
	}
	for _, tab := range []*browserTab{alice, bob, root} {
		if p := tab.consoleProblems(); len(p) > 0 {
			t.Errorf("%s's console: %q", tab.name, p)
		}
	}
}
