package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"chatroom/internal/redistest"
)

// The README's screenshots: a phone and a desktop window, each in the light
// and the dark theme, of a conversation with formatting, a mention, rooms and
// unread counts. `make screenshot` writes them into docs/ (SCREENSHOT_DIR);
// an ordinary test run writes them into a temporary directory and checks
// them, and the page, at each size: nothing wider than the window.

var screenshotSizes = []struct {
	name string
	w, h int64
}{
	{"phone", 360, 740},
	{"desktop", 1280, 800},
}

func TestScreenshots(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-rate-posts", "0", "-rate-typing", "0")
	browser := startBrowser(t)

	bob := login(t, srv.URL, "bob")
	carol := login(t, srv.URL, "carol")
	for _, c := range []*chatClient{bob, carol} {
		c.get("/r/dev") // joins dev
	}
	say := func(c *chatClient, path, text string) {
		t.Helper()
		if r := c.postForm(path, url.Values{"message": {text}}); r.StatusCode != http.StatusNoContent {
			t.Fatalf("post %q: %d %s", text, r.StatusCode, r.body)
		}
	}
	say(bob, "/post", "Morning! The new build is on staging: https://staging.example.org")
	say(carol, "/post", "Thanks **Bob**. Does resume work after a restart?")
	say(bob, "/post", "It does: the browser sends `Last-Event-ID` and the server replays what it missed.")
	say(bob, "/post", "Try it:\n```\nkill -TERM $(pidof chatroom) && go run .\n```")
	say(carol, "/post", "> nothing gets lost\n\nConfirmed, *nothing* got lost. @alice can you check the phone view?")

	alice := newBrowserTab(t, browser, "alice")
	alice.loginThroughForm(srv.URL, "alice")
	alice.do("join dev", chromedp.Navigate(srv.URL+"/r/dev"))
	alice.waitFor("connected in dev", pageConnectedJS)
	alice.do("back to the main room", chromedp.Navigate(srv.URL+"/"))
	alice.waitFor("connected", pageConnectedJS)
	say(carol, "/r/dev/post", "Deploy notes are in the wiki.")
	say(bob, "/r/dev/post", "Merged.")
	alice.waitFor("dev counts two unread", `document.querySelector('#joined li[data-room="dev"] .unread')?.textContent === "2"`)
	alice.typeAndSend("On it, looks good so far.")
	alice.waitFor("own message shown", textsShownInclude("On it, looks good so far."))

	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, size := range screenshotSizes {
		for _, scheme := range []string{"light", "dark"} {
			name := fmt.Sprintf("screenshot-%s-%s.png", size.name, scheme)
			alice.do("size and theme "+name, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
					Width: size.w, Height: size.h, DeviceScaleFactor: 1, Mobile: size.name == "phone"}); err != nil {
					return err
				}
				_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
				return err
			}))
			alice.do("reload "+name, chromedp.Navigate(srv.URL+"/"))
			alice.waitFor("connected", pageConnectedJS)
			alice.waitFor("laid out at the window's width", fmt.Sprintf(`document.documentElement.clientWidth === %d`, size.w))
			if w := pageEval[int](alice, `document.documentElement.scrollWidth`); w > int(size.w) {
				t.Errorf("%s: the page is %d px wide in a %d px window", name, w, size.w)
			}
			ctx, cancel := context.WithTimeout(alice.ctx, browserWait)
			shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			img, err := png.Decode(bytes.NewReader(shot))
			if err != nil {
				t.Fatalf("%s: not a PNG: %v", name, err)
			}
			if b := img.Bounds(); int64(b.Dx()) != size.w || int64(b.Dy()) != size.h {
				t.Errorf("%s: %v, want %d×%d", name, b, size.w, size.h)
			}
			if len(shot) > 400<<10 {
				t.Errorf("%s is %d KiB, want at most 400 KiB for the README", name, len(shot)>>10)
			}
			if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkNoPageProblems(t, alice)
}

// textsShownInclude is a page condition: one shown message's text is text.
func textsShownInclude(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages li.msg .text")].some((e) => e.textContent === %s)`, jsLiteral(text))
}
