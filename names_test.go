package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/crypto/bcrypt"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// loginAs posts /login for user (and password) from client address xff
// (the server must trust 127.0.0.1 as a proxy), with c's cookies.
func (c *chatClient) loginAs(user, password, xff string) response {
	c.t.Helper()
	v := url.Values{"user": {user}}
	if password != "" {
		v.Set("password", password)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/login", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return c.do(req)
}

// cheap makes a server hash new passwords at bcrypt's lowest cost: the
// real cost takes seconds per hash under the race detector.
func cheap() options { return options{bcryptCost: bcrypt.MinCost} }

// cheapHash replaces the stored hash of a reserved name with a cheap one of
// the same password, so tests that check it often stay fast under -race.
func cheapHash(t *testing.T, rs *redistest.Server, key, password string) {
	t.Helper()
	ctx := context.Background()
	ttl := rs.Client().PTTL(ctx, userKey(key)).Val()
	h, _ := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err := rs.Client().Set(ctx, userKey(key), h, max(ttl, 0)).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordHashingBounded: however many logins with a password arrive at
// once, at most -hash-slots hashes run at a time (observed as each hash
// starts); the rest wait briefly and get 503 with Retry-After, and one
// address beyond its share of the slots gets 429 at once.
func TestPasswordHashingBounded(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	var peak, hashes atomic.Int64
	opts := options{bcryptCost: 6, hashing: func(active int64) {
		hashes.Add(1)
		for {
			p := peak.Load()
			if active <= p || peak.CompareAndSwap(p, active) {
				return
			}
		}
	}}
	srv := startServerWith(t, rs.URL(), opts, "-hash-slots", "2", "-hash-wait", "200ms",
		"-trusted-proxies", "127.0.0.1", "-rate-reserves", "0")

	run := func(n int, addr func(i int) string) map[int]int {
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := newClient(t, srv.URL)
				<-start
				r := c.loginAs(fmt.Sprintf("hasher%d-%d", n, i), "a long password", addr(i))
				switch r.StatusCode {
				case http.StatusSeeOther:
				case http.StatusServiceUnavailable:
					if r.Header.Get("Retry-After") == "" || !strings.Contains(r.body, "busy checking other passwords") {
						t.Errorf("503 without Retry-After or sentence: %v %q", r.Header, r.body)
					}
				case http.StatusTooManyRequests:
					if r.Header.Get("Retry-After") == "" || !strings.Contains(r.body, "Your address already has password checks in progress") {
						t.Errorf("429 without Retry-After or sentence: %v %q", r.Header, r.body)
					}
				default:
					t.Errorf("reservation %d: status %d: %s", i, r.StatusCode, r.body)
				}
				mu.Lock()
				statuses[r.StatusCode]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		return statuses
	}

	// 40 addresses at once: never more than 2 hashes running.
	got := run(40, func(i int) string { return fmt.Sprintf("10.20.%d.%d", i/200, 1+i%200) })
	t.Logf("40 addresses: statuses %v, %d hashes, peak %d at once", got, hashes.Load(), peak.Load())
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("peak concurrent hashes %d, want 1..2 (-hash-slots 2)", p)
	}
	if got[http.StatusSeeOther] == 0 || got[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("want some reservations done and some refused with 503: %v", got)
	}

	// One address at once: beyond its share (1 of 2 slots) it gets 429.
	got = run(20, func(int) string { return "10.30.0.1" })
	t.Logf("one address: statuses %v, peak %d at once", got, peak.Load())
	if got[http.StatusTooManyRequests] == 0 || got[http.StatusSeeOther] == 0 {
		t.Fatalf("one address, 20 at once: want 429s and some done: %v", got)
	}
	if p := peak.Load(); p > 2 {
		t.Fatalf("peak concurrent hashes %d, want at most 2", p)
	}
	// Another address is still served meanwhile and afterwards.
	if r := newClient(t, srv.URL).loginAs("bystander", "", "10.40.0.1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("open login after the burst: %d %s", r.StatusCode, r.body)
	}
}

// TestPasswordBackoffPerName: wrong passwords for one name from many
// addresses (behind the trusted proxy) lead to 429 with a growing
// Retry-After once -name-failures is reached, before any hashing; the
// owner's browser, holding the known-device cookie from its earlier login,
// still logs in during the hold, while a browser without it (even with the
// right password, even with a device cookie for another name) is held back.
func TestPasswordBackoffPerName(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServerWith(t, rs.URL(), cheap(), "-trusted-proxies", "127.0.0.1", "-rate-passwords", "100",
		"-name-failures", "3", "-name-backoff", "30s", "-name-backoff-max", "10m")
	const pw = "dana's secret"
	owner := newClient(t, srv.URL)
	if r := owner.loginAs("dana", pw, "10.1.0.1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reserve dana: %d %s", r.StatusCode, r.body)
	}
	cheapHash(t, rs, "dana", pw)
	other := newClient(t, srv.URL) // knows erin, not dana
	if r := other.loginAs("erin", "erin's secret", "10.1.0.2"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reserve erin: %d %s", r.StatusCode, r.body)
	}

	var retries []int
	for i := range 10 {
		r := newClient(t, srv.URL).loginAs("dana", fmt.Sprintf("guess %d", i), fmt.Sprintf("10.2.0.%d", i+1))
		switch {
		case i < 3:
			if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong password") {
				t.Fatalf("guess %d: %d %s, want 401 wrong password", i, r.StatusCode, shown(r.body))
			}
		default:
			if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many wrong passwords were tried") {
				t.Fatalf("guess %d from a new address: %d %s, want 429", i, r.StatusCode, shown(r.body))
			}
			s, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || s < 1 {
				t.Fatalf("guess %d: Retry-After %q", i, r.Header.Get("Retry-After"))
			}
			retries = append(retries, s)
		}
	}
	if retries[0] > 30 {
		t.Fatalf("first hold %d s, want at most -name-backoff 30s", retries[0])
	}

	// The owner's browser passes the hold, from yet another address.
	if r := owner.loginAs("dana", pw, "10.3.0.1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("owner with known-device cookie during the hold: %d %s", r.StatusCode, shown(r.body))
	}
	// Without the cookie for dana, even the right password waits.
	for name, c := range map[string]*chatClient{"fresh browser": newClient(t, srv.URL), "erin's browser": other} {
		if r := c.loginAs("dana", pw, "10.3.0.2"); r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s with dana's password during the hold: %d %s, want 429", name, r.StatusCode, shown(r.body))
		}
	}
	// A forged device cookie does not count either.
	forged := newClient(t, srv.URL)
	u, _ := url.Parse(srv.URL + "/login")
	forged.hc.Jar.SetCookies(u, []*http.Cookie{{Name: deviceCookie, Value: "ZGFuYQ", Path: "/login"}})
	if r := forged.loginAs("dana", pw, "10.3.0.3"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("forged device cookie: %d, want 429", r.StatusCode)
	}
	// The hold grows with further failures: a wrong guess from the
	// owner's browser (it is not held, so it counts) lengthens it.
	if r := owner.loginAs("dana", "typo", "10.3.0.1"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("owner's typo: %d %s", r.StatusCode, shown(r.body))
	}
	r := newClient(t, srv.URL).loginAs("dana", "guess", "10.4.0.1")
	if s, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.StatusCode != http.StatusTooManyRequests || s <= retries[0] {
		t.Fatalf("after another failure: %d Retry-After %q, want 429 with more than %d s", r.StatusCode, r.Header.Get("Retry-After"), retries[0])
	}
	// Another reserved name is not held.
	if r := newClient(t, srv.URL).loginAs("erin", "erin's secret", "10.5.0.1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("erin during dana's hold: %d", r.StatusCode)
	}
}

// lookAlikesFromData builds names that look like base by replacing one
// letter with a character the Unicode confusables data itself maps to that
// letter (its skeleton is the letter, or the letter's upper case), keeping
// only names PRECIS accepts as a name of another person (another key).
func lookAlikesFromData(base string) []string {
	targets := map[string][]rune{}
	for _, c := range base {
		targets[string(c)] = nil
	}
	for r := rune(0x80); r < 0x20000; r++ {
		if !utf8.ValidRune(r) || unicode.IsControl(r) {
			continue
		}
		sk := confusables.Skeleton(string(r))
		for c := range targets {
			if sk == c || sk == strings.ToUpper(c) {
				targets[c] = append(targets[c], r)
			}
		}
	}
	_, baseKey, _ := chat.CleanName(base)
	var out []string
	for i, c := range []rune(base) {
		for _, r := range targets[string(c)] {
			name := []rune(base)
			name[i] = r
			s := string(name)
			if _, key, err := chat.CleanName(s); err == nil && key != baseKey && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestLookAlikeNamesRefused: with alice and bob reserved, names that look
// like them (the eight of the hostile test, and every one-letter look-alike
// the confusables data yields) are refused with 409 naming the taken name;
// so are look-alikes of a name online on another instance; the owners and
// genuinely different names log in.
func TestLookAlikeNamesRefused(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a := startServerWith(t, rs.URL(), cheap(), "-rate-passwords", "0", "-presence-ttl", "3s")
	b := startServerWith(t, rs.URL(), cheap(), "-rate-passwords", "0", "-presence-ttl", "3s")
	for _, n := range []string{"alice", "bob"} {
		if r := newClient(t, a.URL).loginAs(n, n+"'s password", ""); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("reserve %s: %d %s", n, r.StatusCode, r.body)
		}
		cheapHash(t, rs, n, n+"'s password")
	}
	hostile := []string{"aIice", "Ꭺlice", "ɑlice", "aǀice", "ꓮlice", "aliᴄe", "alꓲce", "alɩce"}
	generated := append(lookAlikesFromData("alice"), lookAlikesFromData("bob")...)
	t.Logf("%d look-alikes generated from the confusables data, e.g. %q", len(generated), generated[:min(12, len(generated))])
	if len(generated) < 50 {
		t.Fatalf("only %d look-alikes generated", len(generated))
	}
	refused := 0
	for i, n := range append(hostile, generated...) {
		srv := []*testServer{a, b}[i%2]
		want := "alice"
		if utf8.RuneCountInString(n) == 3 {
			want = "bob"
		}
		r := newClient(t, srv.URL).loginAs(n, "", "")
		if r.StatusCode != http.StatusConflict || !strings.Contains(r.body, fmt.Sprintf("too similar to &#34;%s&#34;, which is taken", want)) {
			t.Errorf("look-alike %q (%+q): %d %s, want 409 too similar to %s", n, n, r.StatusCode, shown(r.body), want)
			continue
		}
		refused++
	}
	t.Logf("%d look-alikes refused", refused)
	// Reserving a look-alike is refused the same way.
	if r := newClient(t, a.URL).loginAs("aIice", "another password", ""); r.StatusCode != http.StatusConflict {
		t.Fatalf("reserving aIice: %d", r.StatusCode)
	}

	// The owners log in, in any case; different names are accepted.
	for _, n := range []string{"ALICE", "Alice", "bob"} {
		key := strings.ToLower(n)
		if r := newClient(t, b.URL).loginAs(n, key+"'s password", ""); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("owner %s: %d %s", n, r.StatusCode, shown(r.body))
		}
	}
	for _, n := range []string{"alicia", "malice", "ali", "bobby", "rob", "carol", "Aline", "boa"} {
		if r := newClient(t, a.URL).loginAs(n, "", ""); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("different name %q: %d %s", n, r.StatusCode, shown(r.body))
		}
	}

	// An open name online (stream open on A) keeps its look-alikes out on
	// B; its own holder logs in again.
	frank := login(t, a.URL, "frank")
	s := frank.openStream("", "")
	defer s.Close()
	if r := newClient(t, b.URL).loginAs("frɑnk", "", ""); r.StatusCode != http.StatusConflict || !strings.Contains(r.body, "frank") {
		t.Fatalf("look-alike of online frank: %d %s", r.StatusCode, shown(r.body))
	}
	// While the stream stays open its instance keeps the claim: wiped,
	// it comes back within a third of the hold (2 × -presence-ttl).
	rdb := rs.Client()
	ctx := context.Background()
	claims := skeletonKeys("o", chat.Skeletons("frank"))
	rdb.Del(ctx, claims...)
	deadline := time.Now().Add(20 * time.Second)
	for rdb.Exists(ctx, claims...).Val() < int64(len(claims)) {
		if time.Now().After(deadline) {
			t.Fatalf("online claims of frank not refreshed while his stream is open")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := newClient(t, b.URL).loginAs("frɑnk", "", ""); r.StatusCode != http.StatusConflict {
		t.Fatalf("look-alike of online frank after the refresh: %d %s", r.StatusCode, shown(r.body))
	}
	if r := frank.withBase(b.URL).loginAs("frank", "", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("frank again: %d", r.StatusCode)
	}
}

// TestReservingEndsOtherSessions: someone used carol before it was
// reserved; reserving carol (on instance A) ends their session on every
// instance: their stream on B closes with "logged-out", their posts get
// 401. The one who reserved keeps posting.
func TestReservingEndsOtherSessions(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a := startServerWith(t, rs.URL(), cheap())
	b := startServerWith(t, rs.URL(), cheap())
	earlier := login(t, b.URL, "carol")
	earlier.post("I am carol")
	stream := earlier.openStream("", "")
	defer stream.Close()
	bystander := login(t, b.URL, "dave")

	owner := newClient(t, a.URL)
	if r := owner.loginAs("Carol", "carol's own password", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reserve carol: %d %s", r.StatusCode, r.body)
	}
	ev := stream.next(t, "disconnect", 10*time.Second)
	if !strings.Contains(ev.Data, "logged-out") {
		t.Fatalf("earlier carol's stream on B: disconnect %q, want logged-out", ev.Data)
	}
	for _, c := range []*chatClient{earlier, earlier.withBase(a.URL)} {
		if r := c.postForm("/post", url.Values{"message": {"still carol?"}}); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("earlier carol posts on %s: %d, want 401", c.base, r.StatusCode)
		}
		if r := c.get("/stream"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("earlier carol streams on %s: %d, want 401", c.base, r.StatusCode)
		}
	}
	owner.post("the real Carol")
	owner.withBase(b.URL).post("the real Carol, on B")
	bystander.post("dave is unaffected")
}

// TestReservationExpiresAndIsLimited: a reservation lasts -reserve-ttl after
// its last password login (each one refreshes it), and so do its
// look-alike claims; once expired the name is free. One address reserves at
// most -rate-reserves names a day.
func TestReservationExpiresAndIsLimited(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	srv := startServerWith(t, rs.URL(), cheap(), "-reserve-ttl", "2h", "-rate-reserves", "2", "-trusted-proxies", "127.0.0.1")
	rdb := rs.Client()
	ctx := context.Background()
	if r := newClient(t, srv.URL).loginAs("gina", "gina's password", "10.9.0.1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reserve gina: %d", r.StatusCode)
	}
	cheapHash(t, rs, "gina", "gina's password")
	inRange := func(what, key string) {
		t.Helper()
		ttl := rdb.PTTL(ctx, key).Val()
		if ttl < 2*time.Hour-time.Minute || ttl > 2*time.Hour {
			t.Fatalf("%s (%s) expires in %v, want about 2h", what, key, ttl)
		}
	}
	skels := chat.Skeletons("gina")
	inRange("reservation", userKey("gina"))
	inRange("look-alike claim", skeletonKey("r", skels[0]))
	// A password login refreshes both.
	rdb.Expire(ctx, userKey("gina"), time.Minute)
	rdb.Expire(ctx, skeletonKey("r", skels[0]), time.Minute)
	if r := newClient(t, srv.URL).loginAs("gina", "gina's password", "10.9.0.2"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("gina logs in: %d", r.StatusCode)
	}
	inRange("refreshed reservation", userKey("gina"))
	inRange("refreshed look-alike claim", skeletonKey("r", skels[0]))
	// Expired (as Redis does it after 2h without a login), the name is free.
	for _, k := range append([]string{userKey("gina")}, skeletonKeys("r", skels)...) {
		rdb.PExpire(ctx, k, time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(ctx, userKey("gina")).Val() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("reservation did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := newClient(t, srv.URL).loginAs("gina", "", "10.9.0.3"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("expired name: %d %s", r.StatusCode, shown(r.body))
	}

	// -rate-reserves 2 per address and day.
	for i, n := range []string{"hugo1", "hugo2", "hugo3"} {
		r := newClient(t, srv.URL).loginAs(n, "hugo's password", "10.9.1.1")
		want := http.StatusSeeOther
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if r.StatusCode != want {
			t.Fatalf("reservation %d from one address: %d %s, want %d", i+1, r.StatusCode, shown(r.body), want)
		}
		if i == 2 && (!strings.Contains(r.body, "reserved too many names today") || r.Header.Get("Retry-After") == "") {
			t.Fatalf("third reservation: %v %s", r.Header, shown(r.body))
		}
	}
	if r := newClient(t, srv.URL).loginAs("hugo3", "hugo's password", "10.9.1.2"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reservation from another address: %d", r.StatusCode)
	}
}

func skeletonKeys(kind string, skels []string) []string {
	var out []string
	for _, s := range skels {
		out = append(out, skeletonKey(kind, s))
	}
	return out
}
