package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// The browser tests drive the real page in real headless Chromium: one
// browser process per test, one browser context (a private window with its own
// cookie jar) per user.

const (
	chromiumPath = "/usr/bin/chromium"
	// browserWait bounds every wait on a page condition: generous, because two
	// cores are shared with the race detector and other tests.
	browserWait = 30 * time.Second
	// viewport is the window size of every tab, and of the README screenshot.
	viewportW, viewportH = 900, 700
)

// startBrowser starts one headless Chromium for the test (with a fresh
// temporary profile, which chromedp makes and removes) and returns its root
// context. The browser is closed at cleanup.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	return startBrowserWith(t)
}

// startBrowserWith is startBrowser with more command-line options.
func startBrowserWith(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium not found: run make deps (%v)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(viewportW, viewportH),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit and its profile to go
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// browserTab is one user's window: a tab in its own browser context, with
// everything the page writes to its console and every JavaScript dialog it
// opens recorded.
type browserTab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex // guards console and dialogs
	console []chromedp.ConsoleMessage
	dialogs []string
}

// newBrowserTab opens a tab in a new browser context of browser. Dialogs are
// recorded and dismissed so that one can never block the page.
func newBrowserTab(t *testing.T, browser context.Context, name string) *browserTab {
	t.Helper()
	return openTab(t, browser, name, chromedp.WithNewBrowserContext())
}

// openTab opens a tab under parent (in parent's browser context when parent
// is a tab's context), recording its console and dialogs.
func openTab(t *testing.T, parent context.Context, name string, opts ...chromedp.ContextOption) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
		t.Fatalf("open a tab for %s: %v", name, err)
	}
	tab := &browserTab{t: t, name: name, ctx: ctx}

	// Subscribe before anything is loaded, so no message is missed; the
	// readers stop when their context ends, and cleanup waits for them.
	wctx, stop := context.WithCancel(ctx)
	messages := chromedp.Console(wctx)
	dialogs := chromedp.Events(wctx, page.JavascriptDialogOpening)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tab.mu.Lock()
			tab.console = append(tab.console, m)
			tab.mu.Unlock()
		}
	})
	wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tab.mu.Lock()
			tab.dialogs = append(tab.dialogs, string(ev.Type)+": "+ev.Message)
			tab.mu.Unlock()
			chromedp.Call(wctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	return tab
}

// do runs actions in the tab, failing the test on error.
func (b *browserTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// pageEval evaluates a JavaScript expression in the tab and decodes its value.
func pageEval[T any](b *browserTab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it is true, failing
// the test with what the page shows when it is not within browserWait.
func (b *browserTab) waitFor(what, cond string) {
	b.t.Helper()
	if err := b.poll(cond, browserWait); err != nil {
		b.t.Fatalf("%s: %s: not so within %v (%v)\ncondition: %s\n%s", b.name, what, browserWait, err, cond, b.describe())
	}
}

func (b *browserTab) poll(cond string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return err
}

// describe tells what the page shows, for failure messages.
func (b *browserTab) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: document.getElementById("status")?.className,
		error: document.getElementById("send-error")?.textContent,
		input: document.getElementById("in")?.value,
		messages: [...document.querySelectorAll("#messages li")].map((li) => li.dataset.id + " " + li.textContent),
	}, null, 1)`))
	if err != nil {
		s = "unknown: " + err.Error()
	}
	return fmt.Sprintf("page: %s\ndialogs: %q\nconsole problems: %q", s, b.dialogsOpened(), b.consoleProblems())
}

// consoleProblems returns the console errors, uncaught exceptions and
// Content-Security-Policy reports the page produced so far.
func (b *browserTab) consoleProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var bad []string
	for _, m := range b.console {
		if m.Type == chromedp.ConsoleError || m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
			bad = append(bad, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
		}
	}
	return bad
}

func (b *browserTab) dialogsOpened() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.dialogs)
}

// loginThroughForm opens base, expects to be sent to the login page, types
// name into it and submits it; it returns the response of the chat page the
// form leads to.
func (b *browserTab) loginThroughForm(base, name string) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		b.t.Fatalf("%s: open %s: %v", b.name, base, err)
	}
	if resp.Status != http.StatusOK || !strings.HasSuffix(resp.URL, "/login") {
		b.t.Fatalf("%s: opening %s without a session gave %d %s, want the login page", b.name, base, resp.Status, resp.URL)
	}
	checkPageSecurityHeaders(b.t, resp)
	b.do("type the name", chromedp.SendKeys(chromedp.ID("user"), name))
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	if err != nil {
		b.t.Fatalf("%s: submit the login form: %v", b.name, err)
	}
	if resp.Status != http.StatusOK || resp.URL != base+"/" {
		b.t.Fatalf("%s: login led to %d %s, want 200 %s/\n%s", b.name, resp.Status, resp.URL, base, b.describe())
	}
	if got := pageEval[string](b, `document.getElementById("me").textContent`); got != name {
		b.t.Fatalf("%s: the page greets %q, want %q", b.name, got, name)
	}
	return resp
}

// checkPageSecurityHeaders checks that a page response carries the strict CSP
// and its companion headers.
func checkPageSecurityHeaders(t *testing.T, resp *network.Response) {
	t.Helper()
	header := func(name string) string {
		for k, v := range resp.Headers {
			if strings.EqualFold(k, name) {
				return fmt.Sprint(v)
			}
		}
		return ""
	}
	csp := header("Content-Security-Policy")
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'",
		"require-trusted-types-for 'script'", "trusted-types chat"} {
		if !strings.Contains(csp, directive) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", resp.URL, csp, directive)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy %q allows inline script or eval", resp.URL, csp)
	}
	if got := header("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q", resp.URL, got)
	}
	// The opener policy only where Chromium honours it (else it logs an
	// error on every page): https or loopback.
	want := ""
	if u, err := url.Parse(resp.URL); err == nil && (u.Scheme == "https" || u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost") {
		want = "same-origin"
	}
	if got := header("Cross-Origin-Opener-Policy"); got != want {
		t.Errorf("%s: Cross-Origin-Opener-Policy = %q, want %q", resp.URL, got, want)
	}
}

// typeAndSend types text into the message box like a user and presses Enter.
func (b *browserTab) typeAndSend(text string) {
	b.t.Helper()
	b.do("type a message", chromedp.SendKeys(chromedp.ID("in"), text))
	b.pressEnter()
}

// pressEnter presses Enter in the message box: one keyDown carrying the text
// "\r", as a real key press does, so that the page's keydown handler decides
// whether a line break is inserted, then the keyUp.
func (b *browserTab) pressEnter() {
	b.t.Helper()
	enter := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, p := range []input.DispatchKeyEventParams{
			{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", Text: "\r", UnmodifiedText: "\r",
				WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13},
			{Type: input.DispatchKeyEventTypeKeyUp, Key: "Enter", Code: "Enter",
				WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13},
		} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	})
	b.do("press Enter", chromedp.Focus(chromedp.ID("in")), enter)
}

// shownMessage is a chat message as the page shows it.
type shownMessage struct {
	ID       string `json:"id"`
	User     string `json:"user"`
	Text     string `json:"text"`
	Time     string `json:"time"`
	DateTime string `json:"datetime"`
	Own      bool   `json:"own"`
}

const pageMessagesJS = `[...document.querySelectorAll("#messages li.msg:not(.notice)")].map((li) => ({
	id: li.dataset.id || "",
	user: li.querySelector(".user")?.textContent ?? "",
	text: li.querySelector(".text")?.textContent ?? "",
	time: li.querySelector("time")?.textContent ?? "",
	datetime: li.querySelector("time")?.dateTime ?? "",
	own: li.classList.contains("own"),
}))`

func (b *browserTab) messages() []shownMessage {
	b.t.Helper()
	return pageEval[[]shownMessage](b, pageMessagesJS)
}

// receivedMessages returns the message events the page's EventSource
// delivered, raw (window.chatReceived, recorded before the page's own
// "already shown" check), as "<id> <text>".
func (b *browserTab) receivedMessages() []string {
	b.t.Helper()
	return pageEval[[]string](b, `window.chatReceived.filter((e) => e.type === "message").map((e) => {
		const m = JSON.parse(e.data);
		return (e.id === m.id ? m.id : "id-mismatch:" + e.id + "/" + m.id) + " " + m.text;
	})`)
}

// checkReceived requires the page to have received exactly want, each once,
// in order, with strictly increasing IDs: a duplicate or a reorder from the
// server fails here even though the page would hide it.
func checkReceived(t *testing.T, b *browserTab, want []string) {
	t.Helper()
	raw := b.receivedMessages()
	var texts []string
	prev := ""
	for _, r := range raw {
		id, text, _ := strings.Cut(r, " ")
		if strings.HasPrefix(id, "id-mismatch:") || (prev != "" && compareShownIDs(prev, id) >= 0) {
			t.Errorf("%s received %q after %q: IDs not strictly increasing (or event id differs from the data's)", b.name, id, prev)
		}
		prev = id
		texts = append(texts, text)
	}
	if !slices.Equal(texts, want) {
		t.Errorf("%s received (raw, in order):\n%q\nwant each once, in order:\n%q", b.name, texts, want)
	}
}

// jsLiteral quotes s as a JavaScript string literal.
func jsLiteral(s string) string {
	q, _ := json.Marshal(s) // a JSON string is a JavaScript string literal
	return string(q)
}

// waitLastMessage waits until the newest message on the page is text by user.
func (b *browserTab) waitLastMessage(user, text string) shownMessage {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("newest message is %q by %q", text, user), fmt.Sprintf(`(() => {
		const m = %s;
		const last = m[m.length - 1];
		return !!last && last.user === %s && last.text === %s;
	})()`, pageMessagesJS, jsLiteral(user), jsLiteral(text)))
	ms := b.messages()
	return ms[len(ms)-1]
}

const pageConnectedJS = `(() => {
	const s = document.getElementById("status");
	return s.classList.contains("connected") && s.textContent.trim() === "connected";
})()`

var shownClock = regexp.MustCompile(`^\d{1,2}[:.]\d{2}`)

// checkShownMessage checks one shown message: sender, text, a local time and
// whether it is marked as the viewer's own.
func checkShownMessage(t *testing.T, viewer string, m shownMessage, user, text string, own bool) {
	t.Helper()
	if m.User != user || m.Text != text {
		t.Errorf("%s sees %q by %q, want %q by %q", viewer, m.Text, m.User, text, user)
	}
	if m.Own != own {
		t.Errorf("%s: message %q by %q has class own = %v, want %v", viewer, m.Text, m.User, m.Own, own)
	}
	if !shownClock.MatchString(m.Time) {
		t.Errorf("%s: message %q shows time %q, want a local clock time", viewer, m.Text, m.Time)
	}
	if ts, err := time.Parse(time.RFC3339Nano, m.DateTime); err != nil || time.Since(ts) > time.Hour || time.Until(ts) > time.Minute {
		t.Errorf("%s: message %q has datetime %q (%v), want the recent send time", viewer, m.Text, m.DateTime, err)
	}
	if m.ID == "" {
		t.Errorf("%s: message %q has no data-id", viewer, m.Text)
	}
}

// TestBrowserChat is the tutorial's promise seen by two people in two private
// windows: log in through the form, chat both ways with Enter, live, with
// senders, times and own messages marked; hostile text in messages and names
// stays text and runs nothing; the CSP holds without a single violation.
func TestBrowserChat(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	browser := startBrowser(t)
	alice := newBrowserTab(t, browser, "alice")
	bob := newBrowserTab(t, browser, "bob")

	for _, u := range []*browserTab{alice, bob} {
		resp := u.loginThroughForm(srv.URL, u.name)
		checkPageSecurityHeaders(t, resp)
		u.waitFor("status shows connected", pageConnectedJS)
	}

	// Both ways, live, with Enter; the sender's own message is marked.
	conversation := []struct {
		from *browserTab
		text string
	}{
		{alice, "Hi Bob! Is the new chat server up?"},
		{bob, "It is: Go, Redis, one hub. Try a restart, nothing gets lost."},
		{alice, "Grüße from the second window, it arrived in a blink."},
		{bob, "Shift+Enter gives a new line, Enter sends."},
	}
	for _, line := range conversation {
		line.from.typeAndSend(line.text)
		for _, viewer := range []*browserTab{alice, bob} {
			m := viewer.waitLastMessage(line.from.name, line.text)
			checkShownMessage(t, viewer.name, m, line.from.name, line.text, viewer == line.from)
		}
		// The box is emptied once the message is accepted, with no stray line break.
		line.from.waitFor("message box emptied after sending", `document.getElementById("in").value === ""`)
	}
	for _, u := range []*browserTab{alice, bob} {
		if got := u.messages(); len(got) != len(conversation) {
			t.Errorf("%s shows %d messages, want %d: %+v", u.name, len(got), len(conversation), got)
		}
		if !pageEval[bool](u, pageConnectedJS) {
			t.Errorf("%s: status is not connected\n%s", u.name, u.describe())
		}
	}

	// Hostile message text is shown literally and runs nothing.
	payloads := []string{`<img src=x onerror=alert(1)>`, `<script>alert(2)</script>`}
	for _, p := range payloads {
		alice.typeAndSend(p)
		for _, viewer := range []*browserTab{alice, bob} {
			m := viewer.waitLastMessage("alice", p)
			checkShownMessage(t, viewer.name, m, "alice", p, viewer == alice)
		}
	}

	// So is a hostile name, in the greeting and on every message.
	evilName := `<img src=x onerror=alert(3)>`
	mallory := newBrowserTab(t, browser, "mallory")
	mallory.loginThroughForm(srv.URL, evilName) // checks #me's text is the literal name
	mallory.waitFor("status shows connected", pageConnectedJS)
	mallory.typeAndSend("hello from a strange name")
	for _, viewer := range []*browserTab{alice, bob, mallory} {
		m := viewer.waitLastMessage(evilName, "hello from a strange name")
		checkShownMessage(t, viewer.name, m, evilName, "hello from a strange name", viewer == mallory)
	}

	// The server-rendered history escapes them too: reload bob's page.
	bob.do("reload", chromedp.Navigate(srv.URL+"/"))
	bob.waitFor("status shows connected after reload", pageConnectedJS)
	history := bob.messages()
	wantTexts := []string{}
	for _, line := range conversation {
		wantTexts = append(wantTexts, line.text)
	}
	wantTexts = append(wantTexts, payloads...)
	wantTexts = append(wantTexts, "hello from a strange name")
	var gotTexts []string
	for _, m := range history {
		gotTexts = append(gotTexts, m.Text)
	}
	if !slices.Equal(gotTexts, wantTexts) {
		t.Errorf("bob's reloaded page shows %q, want %q", gotTexts, wantTexts)
	}
	if last := history[len(history)-1]; last.User != evilName || last.Own {
		t.Errorf("bob's reloaded page shows the last message by %q (own %v), want %q", last.User, last.Own, evilName)
	}

	var all []string
	for _, line := range conversation {
		all = append(all, line.text)
	}
	all = append(all, payloads...)
	all = append(all, "hello from a strange name")
	checkReceived(t, alice, all)
	checkReceived(t, mallory, []string{"hello from a strange name"})

	for _, u := range []*browserTab{alice, bob, mallory} {
		// No payload turned into markup anywhere on the page.
		if n := pageEval[int](u, `document.querySelectorAll("#messages img, #messages script, header img, header script").length`); n != 0 {
			t.Errorf("%s: %d <img>/<script> elements were created from user text", u.name, n)
		}
		// A fresh room with nothing trimmed and nothing malformed has no notices.
		if notices := pageEval[[]string](u, `[...document.querySelectorAll("#messages li.notice")].map((li) => li.textContent)`); len(notices) != 0 {
			t.Errorf("%s: unexpected notices: %q", u.name, notices)
		}
		// Only the page's own scripts, each from /static/ (none created from user text).
		if srcs := pageEval[[]string](u, `[...document.scripts].map((s) => new URL(s.src || "inline:", location.href).pathname)`); !slices.Equal(srcs, []string{"/static/theme.js", "/static/tabs.js", "/static/app.js", "/static/moderation.js"}) {
			t.Errorf("%s: the page's scripts are %q, want theme.js, tabs.js, app.js and moderation.js", u.name, srcs)
		}
		if d := u.dialogsOpened(); len(d) != 0 {
			t.Errorf("%s: JavaScript dialogs opened: %q", u.name, d)
		}
		if p := u.consoleProblems(); len(p) != 0 {
			t.Errorf("%s: console errors or CSP violations:\n%s", u.name, strings.Join(p, "\n"))
		}
	}

	// The watchers above would have seen a violation or a dialog: an inline
	// script is refused by the CSP and reported, and an alert is recorded.
	if ran := pageEval[bool](mallory, `(() => {
		const s = document.createElement("script");
		s.append("window.inlineRan = true"); // a text node: assigning textContent would throw (Trusted Types)
		document.body.append(s);
		return window.inlineRan === true;
	})()`); ran {
		t.Errorf("an inline script ran: the CSP does not block it")
	}
	waitFor(t, browserWait, "the CSP violation is reported on the console", func() bool {
		return len(mallory.consoleProblems()) > 0
	})
	pageEval[chromedp.Void](mallory, `alert("control")`)
	waitFor(t, browserWait, "the control alert is recorded", func() bool {
		return slices.Equal(mallory.dialogsOpened(), []string{"alert: control"})
	})
}

// TestBrowserSendErrorKeepsText: when a post is refused (too long for the
// server's limit, or Redis is down) the page shows the server's reason and
// keeps the typed text, so the user can send it again once possible.
func TestBrowserSendErrorKeepsText(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	srv := startServer(t, rs.URL(), "-max-message", "10")
	browser := startBrowser(t)
	carol := newBrowserTab(t, browser, "carol")
	carol.loginThroughForm(srv.URL, "carol")
	carol.waitFor("status shows connected", pageConnectedJS)

	const errorShown = `(() => {
		const e = document.getElementById("send-error");
		return !e.hidden && e.offsetParent !== null && e.textContent.includes(%s);
	})()`

	// Too long. The textarea's maxlength stops typing past 10 characters, so
	// the text is set as a page whose limit changed since it loaded would have it.
	long := "eleven char"
	carol.do("set a long message", chromedp.SetValue(chromedp.ID("in"), long))
	carol.pressEnter()
	carol.waitFor("the server's reason is shown", fmt.Sprintf(errorShown, jsLiteral("the limit is 10")))
	if got := pageEval[string](carol, `document.getElementById("in").value`); got != long {
		t.Errorf("after a refused post the box holds %q, want %q", got, long)
	}

	// Redis down: 503, the reason shown, the text kept.
	pageEval[chromedp.Void](carol, `document.getElementById("in").value = ""`)
	const short = "hi there"
	carol.do("type", chromedp.SendKeys(chromedp.ID("in"), short))
	rs.Kill()
	carol.pressEnter()
	carol.waitFor("the store outage is shown", fmt.Sprintf(errorShown, jsLiteral("unavailable")))
	if got := pageEval[string](carol, `document.getElementById("in").value`); got != short {
		t.Errorf("after a failed post the box holds %q, want %q", got, short)
	}
	if got := carol.messages(); len(got) != 0 {
		t.Errorf("refused posts are shown as messages: %+v", got)
	}

	// Redis back: Enter sends the kept text; the error goes away.
	rs.Restart()
	waitReady(t, srv.URL)
	carol.pressEnter()
	m := carol.waitLastMessage("carol", short)
	checkShownMessage(t, "carol", m, "carol", short, true)
	carol.waitFor("the error is hidden and the box emptied", `(() => {
		const e = document.getElementById("send-error");
		return e.hidden && document.getElementById("in").value === "";
	})()`)
	if got := carol.messages(); len(got) != 1 {
		t.Errorf("page shows %d messages, want 1: %+v", len(got), got)
	}
}

// browserFreeAddr returns a loopback address no one listens on now, so that a
// server can be started, killed and started again on it.
func browserFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestBrowserSurvivesRestarts (issue 3): an open page keeps every accepted
// message, exactly once and in order, across a SIGKILL and restart of the
// chat server on the same address and a SIGKILL and restart of Redis, with
// no reload; it shows the outage while it lasts and ends up connected.
func TestBrowserSurvivesRestarts(t *testing.T) {
	rs := redistest.Start(t, redistest.AppendOnlyAlways())
	addr := browserFreeAddr(t)
	flags := []string{"-rate-posts", "0"}
	server := startProcess(t, rs.URL(), addr, flags...)
	base := server.URL

	browser := startBrowser(t)
	dave := newBrowserTab(t, browser, "dave")
	dave.loginThroughForm(base, "dave")
	dave.waitFor("status shows connected", pageConnectedJS)

	poster := login(t, base, "erin")
	var accepted []string // every text that got a 204, in order
	post := func(text string) {
		t.Helper()
		poster.post(text) // fails the test unless 204
		accepted = append(accepted, text)
	}
	for i := range 3 {
		post(fmt.Sprintf("before any failure %d", i))
	}
	dave.waitLastMessage("erin", accepted[len(accepted)-1])

	const outageShown = `(() => {
		const c = document.getElementById("status").classList;
		return c.contains("reconnecting") || c.contains("degraded");
	})()`

	// (a) The chat server dies and comes back on the same address. Messages
	// are posted as soon as it is ready, while the page is still waiting to
	// reconnect, and after.
	server.kill()
	dave.waitFor("status shows the server is gone", outageShown)
	server = startProcess(t, rs.URL(), addr, flags...)
	for i := range 5 {
		post(fmt.Sprintf("while the page reconnects %d", i))
	}
	dave.waitFor("status back to connected after the server restart", pageConnectedJS)
	for i := range 3 {
		post(fmt.Sprintf("after the server restart %d", i))
	}
	dave.waitLastMessage("erin", accepted[len(accepted)-1])

	// (b) Redis dies (appendfsync always keeps what it acknowledged) and
	// comes back on the same port. Posts meanwhile are refused, not lost.
	rs.Kill()
	for i := range 3 {
		resp := poster.postForm("/post", url.Values{"message": {fmt.Sprintf("during the Redis outage %d", i)}})
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("post while Redis is down: status %d (%s), want 503", resp.StatusCode, resp.body)
		}
	}
	dave.waitFor("status shows the outage", outageShown)
	rs.Restart()
	// Post at once, retrying while the server still answers 503: the first
	// accepted messages can land before the server's own subscription is
	// back, and must then reach the page through the gap fill.
	for i := range 5 {
		text := fmt.Sprintf("after the Redis restart %d", i)
		deadline := time.Now().Add(browserWait)
		for {
			resp := poster.postForm("/post", url.Values{"message": {text}})
			if resp.StatusCode == http.StatusNoContent {
				accepted = append(accepted, text)
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("post after the Redis restart: status %d (%s)", resp.StatusCode, resp.body)
			}
			time.Sleep(10 * time.Millisecond) // retry pace while Redis comes back
		}
	}
	// The page itself can send again too.
	dave.typeAndSend("dave is still here")
	accepted = append(accepted, "dave is still here")

	dave.waitLastMessage("dave", accepted[len(accepted)-1])
	dave.waitFor("status back to connected after the Redis restart", pageConnectedJS)
	shown := dave.messages()
	var texts, ids []string
	for _, m := range shown {
		texts = append(texts, m.Text)
		ids = append(ids, m.ID)
	}
	if !slices.Equal(texts, accepted) {
		t.Errorf("the page shows (in order):\n%q\nwant every accepted message once, in order:\n%q", texts, accepted)
	}
	checkReceived(t, dave, accepted)
	for i := 1; i < len(ids); i++ {
		if compareShownIDs(ids[i-1], ids[i]) >= 0 {
			t.Errorf("data-id %s follows %s: not strictly increasing", ids[i], ids[i-1])
		}
	}
	if u := dave.dialogsOpened(); len(u) != 0 {
		t.Errorf("dialogs opened: %q", u)
	}
}

// compareShownIDs orders Redis stream IDs "<ms>-<seq>".
func compareShownIDs(a, b string) int {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	if am != bm {
		if am < bm {
			return -1
		}
		return 1
	}
	switch {
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}
