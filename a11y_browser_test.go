package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// axeSource is axe-core, installed from the npm registry by make deps
// (.ci/npm-deps.sh).
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(".deps", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core not installed: run make deps (%v)", err)
	}
	return string(b)
}

// axeViolations injects axe-core into the tab's page (through DevTools,
// which the page's CSP does not govern) and returns its violations, of any
// impact, one line each.
func (b *browserTab) axeViolations(axe string) []string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](axe+";true")); err != nil {
		b.t.Fatalf("%s: inject axe-core: %v", b.name, err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, {resultTypes: ["violations"]}).then(r =>
		r.violations.map(v => v.impact + " " + v.id + ": " + v.help + " — " + v.nodes.map(n => n.target.join(" ")).slice(0, 3).join(", ")))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: run axe-core: %v", b.name, err)
	}
	return out
}

// The login and chat pages have no axe-core violations of any impact, on
// a desktop and on a 360 px phone.
func TestBrowserAccessibility(t *testing.T) {
	axe := axeSource(t)
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL())
	browser := startBrowser(t)
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", viewportW, viewportH}, {"phone", 360, 740}} {
		t.Run(vp.name, func(t *testing.T) {
			tab := newBrowserTab(t, browser, "alice-"+vp.name)
			tab.do("viewport", chromedp.EmulateViewport(vp.w, vp.h))
			tab.do("open the login page", chromedp.Navigate(srv.URL+"/login"))
			if v := tab.axeViolations(axe); len(v) > 0 {
				t.Errorf("login page (%s): %d violations:\n%s", vp.name, len(v), strings.Join(v, "\n"))
			}
			tab.loginThroughForm(srv.URL, "alice-"+vp.name)
			tab.waitFor("the stream to open", `document.getElementById("status").textContent.trim() !== "connecting…"`)
			tab.typeAndSend("hello, accessible world")
			tab.waitFor("the message to show", `document.querySelectorAll("#messages li.msg").length > 0`)
			if v := tab.axeViolations(axe); len(v) > 0 {
				t.Errorf("chat page (%s): %d violations:\n%s", vp.name, len(v), strings.Join(v, "\n"))
			}
		})
	}
}

// The page follows the system's light or dark preference, and the toggle
// pins the other one, remembered across pages; axe-core finds no
// violations (contrast included) in either theme.
func TestBrowserThemes(t *testing.T) {
	axe := axeSource(t)
	srv := startServer(t, redistest.Start(t).URL())
	browser := startBrowser(t)
	tab := newBrowserTab(t, browser, "alice")
	tab.loginThroughForm(srv.URL, "alice")
	bg := func() string {
		return pageEval[string](tab, `getComputedStyle(document.body).backgroundColor`)
	}
	for _, scheme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(tab.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
			t.Fatalf("emulate %s: %v", scheme, err)
		}
		want := map[string]string{"light": "rgb(255, 255, 255)", "dark": "rgb(0, 0, 0)"}[scheme]
		if got := bg(); got != want {
			t.Fatalf("system %s: background %s, want %s", scheme, got, want)
		}
		if v := tab.axeViolations(axe); len(v) > 0 {
			t.Errorf("%s theme: %d violations:\n%s", scheme, len(v), strings.Join(v, "\n"))
		}
	}
	// System dark; the toggle pins light, and it stays after a reload.
	tab.do("toggle", chromedp.Click(chromedp.ID("theme")))
	if got := bg(); got != "rgb(255, 255, 255)" {
		t.Fatalf("after the toggle: background %s, want light", got)
	}
	tab.do("reload", chromedp.Reload())
	tab.waitFor("the page", `document.getElementById("theme") !== null && !document.getElementById("theme").hidden`)
	if got := bg(); got != "rgb(255, 255, 255)" {
		t.Fatalf("after a reload: background %s, want the pinned light theme", got)
	}
}
