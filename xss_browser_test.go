package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// readXSSCorpus reads testdata/xss.txt: one payload a line, "//" comments,
// "\n" for a line break.
func readXSSCorpus(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("testdata/xss.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "//") {
			continue
		}
		out = append(out, strings.ReplaceAll(line, `\n`, "\n"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("testdata/xss.txt holds %d payloads, want at least 100", len(out))
	}
	return out
}

// xssTrapJS runs in every document of the tab before its own scripts:
// whatever a payload could call to show it ran is recorded instead, and so
// is every CSP report, Trusted Types ones included.
const xssTrapJS = `(() => {
	window.__xssCalls = [];
	window.__violations = [];
	window.__xss = (what) => window.__xssCalls.push(String(what ?? "") + " at " + location.href);
	for (const f of ["alert", "confirm", "prompt", "print"]) window[f] = (what) => window.__xss(f + "(" + what + ")");
	document.addEventListener("securitypolicyviolation", (e) =>
		window.__violations.push(e.violatedDirective + " blocked " + e.blockedURI + " sample " + e.sample), true);
})()`

// xssPageProblemsJS nudges every element of the message list (pointer,
// focus) and then returns what is wrong with what the page shows: markup
// in a message other than what internal/markup makes, any markup in a name,
// a link that is not http, https or mailto with the full rel.
const xssPageProblemsJS = `(() => {
	for (const el of document.querySelectorAll("#messages *")) {
		for (const type of ["mouseover", "mouseenter", "focus", "blur", "animationstart"]) el.dispatchEvent(new Event(type));
	}
	const allowed = { P: [], BR: [], EM: [], STRONG: [], DEL: [], CODE: [], PRE: [], BLOCKQUOTE: [], UL: [], OL: ["start"], LI: [], A: ["href", "rel"] };
	const bad = [];
	for (const t of document.querySelectorAll("#messages .text")) {
		const id = t.closest("li").dataset.id;
		for (const el of t.querySelectorAll("*")) {
			const attrs = allowed[el.tagName];
			if (!attrs) {
				bad.push(id + ": element " + el.tagName);
				continue;
			}
			for (const a of el.attributes) if (!attrs.includes(a.name)) bad.push(id + ": " + el.tagName + " has " + a.name + "=" + a.value);
			if (el.tagName === "A" && (!/^(https?:|mailto:)/i.test(el.getAttribute("href") || "") || el.getAttribute("rel") !== "noopener noreferrer nofollow")) {
				bad.push(id + ": link " + el.outerHTML);
			}
		}
	}
	for (const n of document.querySelectorAll("#messages .user, #members li, #typing, #me, #room-name")) {
		for (const el of n.querySelectorAll("*")) if (!el.classList.contains("you")) bad.push("markup in a name: " + n.innerHTML);
	}
	return bad;
})()`

// TestBrowserXSSCorpus posts every payload of testdata/xss.txt as a message,
// and as a user name where chat.CleanName accepts it (that user then posts
// and types), to a page open in Chromium, then reloads it: neither the live
// messages (html of the stream's events) nor the server-rendered ones run
// anything, trip the CSP or Trusted Types, or show markup that
// internal/markup does not make; and both show the same HTML.
func TestBrowserXSSCorpus(t *testing.T) {
	payloads := readXSSCorpus(t)
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0", "-rate-typing", "0", "-page-history", "1000")
	browser := startBrowser(t)
	viewer := newBrowserTab(t, browser, "viewer")
	viewer.do("install the XSS trap", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: xssTrapJS})
		return err
	}))
	viewer.loginThroughForm(srv.URL, "viewer")
	viewer.waitFor("connected", pageConnectedJS)

	posted := 0
	poster := login(t, srv.URL, "poster")
	for _, p := range payloads {
		resp := poster.postForm("/post", url.Values{"message": {p}})
		switch resp.StatusCode {
		case http.StatusNoContent:
			posted++
		case http.StatusBadRequest: // a tab or other control character: refused by chat.CleanMessage
			t.Logf("message refused (%s): %q", strings.TrimSpace(resp.body), p)
		default:
			t.Fatalf("post %q: status %d: %s", p, resp.StatusCode, resp.body)
		}
	}
	if posted < 100 {
		t.Fatalf("only %d payloads were accepted as messages, want at least 100", posted)
	}
	names := 0
	for i, p := range payloads {
		c := newClient(t, srv.URL)
		if resp := c.postForm("/login", url.Values{"user": {p}}); resp.StatusCode != http.StatusSeeOther {
			continue // refused by chat.CleanName: fine
		}
		names++
		c.post(fmt.Sprintf("from name %d", i))
		if resp := c.postForm("/r/chat/typing", url.Values{}); resp.StatusCode != http.StatusNoContent {
			t.Errorf("typing as %q: status %d: %s", p, resp.StatusCode, resp.body)
		}
	}
	t.Logf("%d of %d payloads accepted as messages, %d as names", posted, len(payloads), names)
	if names < 20 {
		t.Fatalf("only %d payloads were accepted as names, want at least 20", names)
	}
	total := posted + names
	shownAll := fmt.Sprintf(`document.querySelectorAll("#messages li.msg:not(.notice)").length === %d`, total)

	check := func(when string) map[string]string {
		t.Helper()
		viewer.waitFor(when+": every message shown", shownAll)
		if bad := pageEval[[]string](viewer, xssPageProblemsJS); len(bad) > 0 {
			t.Errorf("%s: the page shows markup it must not:\n%s", when, strings.Join(bad, "\n"))
		}
		if ran := pageEval[[]string](viewer, `window.__xssCalls`); len(ran) > 0 {
			t.Errorf("%s: payloads ran:\n%s", when, strings.Join(ran, "\n"))
		}
		if v := pageEval[[]string](viewer, `window.__violations`); len(v) > 0 {
			t.Errorf("%s: CSP or Trusted Types violations:\n%s", when, strings.Join(v, "\n"))
		}
		if d := viewer.dialogsOpened(); len(d) > 0 {
			t.Errorf("%s: dialogs opened: %q", when, d)
		}
		if p := viewer.consoleProblems(); len(p) > 0 {
			t.Errorf("%s: console problems:\n%s", when, strings.Join(p, "\n"))
		}
		// The formatting is really there (links, code), not flattened to text.
		if n := pageEval[int](viewer, `document.querySelectorAll("#messages .text a[href], #messages .text code").length`); n == 0 {
			t.Errorf("%s: no message shows a link or code: the html is not used", when)
		}
		return pageEval[map[string]string](viewer, `Object.fromEntries([...document.querySelectorAll("#messages li.msg:not(.notice)")].map((li) => [li.dataset.id, li.querySelector(".text").innerHTML]))`)
	}
	live := check("live")
	viewer.do("reload", chromedp.Reload())
	viewer.waitFor("connected after reload", pageConnectedJS)
	rendered := check("server-rendered")
	for id, h := range live {
		if rendered[id] != h {
			t.Errorf("message %s: live HTML %q, server-rendered %q", id, h, rendered[id])
		}
	}
}
