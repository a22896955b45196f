package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// The page's budgets (issue 10): a page with 50 messages reaches
// DOMContentLoaded within 100 ms on loopback, and Enter in one window shows
// the message in another within 10 ms (median). They are measured, never
// asserted against the clock: `make bench` sets PAGE_BUDGETS=1 and prints the
// figures; `make test` skips this test.

// pageBudgetRuns is how many page loads and how many messages are measured.
const pageBudgetRuns = 30

func TestPageBudgets(t *testing.T) {
	if os.Getenv("PAGE_BUDGETS") == "" {
		t.Skip("a measurement: `make bench` runs it (PAGE_BUDGETS=1)")
	}
	rs := redistest.Start(t)
	// As deployed (info logs, the default limits), except the two one
	// sender typing 30 messages in a row would meet: the per-user rate and
	// the first-messages limit of a new name.
	srv := startServer(t, rs.URL(), "-log-level", "info", "-rate-posts", "0", "-new-name-posts", "0",
		"-rate-posts-addr", "10", "-rate-posts-room", "30", "-streams-per-addr", "100", "-conns-per-addr", "256")
	browser := startBrowser(t)

	// 50 messages with some formatting, as a room has them.
	bob := login(t, srv.URL, "bob")
	for i := range 50 {
		// Within the per-address and per-room rates: a refused post waits
		// for the time the server names, a bounded number of times.
		for try := 0; ; try++ {
			r := bob.postForm("/post", url.Values{"message": {fmt.Sprintf("message %d with *emphasis*, `code` and https://example.org/%d", i, i)}})
			if r.StatusCode == http.StatusNoContent {
				break
			}
			if r.StatusCode != http.StatusTooManyRequests || try == 50 {
				t.Fatalf("post %d: %d %s", i, r.StatusCode, r.body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	alice := newBrowserTab(t, browser, "alice")
	alice.loginThroughForm(srv.URL, "alice")
	alice.waitFor("connected", pageConnectedJS)

	// Page load: a fresh navigation each time (no back/forward cache),
	// DOMContentLoaded after the deferred scripts ran.
	var loads, firstByte, interactive, paint []float64
	for range pageBudgetRuns {
		alice.do("reload", chromedp.Navigate(srv.URL+"/?budget="+fmt.Sprint(time.Now().UnixNano())))
		alice.waitFor("50 messages shown", `document.querySelectorAll("#messages li.msg[data-id]").length >= 50`)
		ms := pageEval[float64](alice, `performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`)
		loads = append(loads, ms)
		firstByte = append(firstByte, pageEval[float64](alice, `performance.getEntriesByType("navigation")[0].responseStart`))
		interactive = append(interactive, pageEval[float64](alice, `performance.getEntriesByType("navigation")[0].domInteractive`))
		alice.waitFor("painted", `performance.getEntriesByName("first-contentful-paint").length > 0`)
		paint = append(paint, pageEval[float64](alice, `performance.getEntriesByName("first-contentful-paint")[0].startTime`))
	}
	alice.waitFor("connected", pageConnectedJS)

	// Enter → shown in another window: the sender notes when its keydown
	// ran, the receiver when the message's item was added (a
	// MutationObserver), both on the shared clock performance.timeOrigin +
	// performance.now().
	carol := newBrowserTab(t, browser, "carol")
	carol.loginThroughForm(srv.URL, "carol")
	carol.waitFor("connected", pageConnectedJS)
	pageEval[chromedp.Void](alice, `(() => {
		window.budgetShown = {};
		new MutationObserver((records) => {
			const now = performance.timeOrigin + performance.now();
			for (const r of records) for (const n of r.addedNodes) {
				const t = n.querySelector && n.querySelector(".text");
				if (t && t.textContent.startsWith("budget ")) window.budgetShown[t.textContent] = now;
			}
		}).observe(document.getElementById("messages"), { childList: true });
	})()`)
	pageEval[chromedp.Void](carol, `(() => {
		window.budgetSent = {};
		document.getElementById("in").addEventListener("keydown", (e) => {
			if (e.key === "Enter") window.budgetSent[e.target.value] = performance.timeOrigin + performance.now();
		}, { capture: true });
	})()`)
	var shown []float64
	for i := range pageBudgetRuns {
		text := fmt.Sprintf("budget %d", i)
		carol.typeAndSend(text)
		alice.waitFor("the message is shown", fmt.Sprintf(`window.budgetShown[%s] !== undefined`, jsLiteral(text)))
		sent := pageEval[float64](carol, fmt.Sprintf(`window.budgetSent[%s]`, jsLiteral(text)))
		got := pageEval[float64](alice, fmt.Sprintf(`window.budgetShown[%s]`, jsLiteral(text)))
		shown = append(shown, got-sent)
	}
	checkNoPageProblems(t, alice, carol)

	report := fmt.Sprintf("page budgets (%d runs each, loopback, headless Chromium):\n"+
		"  page with 50 messages → DOMContentLoaded: median %.1f ms, p90 %.1f ms, max %.1f ms (budget 100 ms);"+
		" of it, first byte median %.1f ms, DOM interactive median %.1f ms; first contentful paint median %.1f ms\n"+
		"  Enter → shown in another window: median %.1f ms, p90 %.1f ms, max %.1f ms (budget 10 ms median)",
		pageBudgetRuns, quantile(loads, 0.5), quantile(loads, 0.9), quantile(loads, 1), quantile(firstByte, 0.5), quantile(interactive, 0.5), quantile(paint, 0.5),
		quantile(shown, 0.5), quantile(shown, 0.9), quantile(shown, 1))
	fmt.Println(report)
	t.Log(strings.TrimSpace(report))
}

// quantile returns the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
