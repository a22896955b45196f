package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"chatroom/internal/chat"
	"chatroom/internal/redistest"
)

// loginWith logs in as name with password (reserving the name the first time).
func loginWith(t testing.TB, base, name, password string, header ...string) *chatClient {
	t.Helper()
	c := newClient(t, base)
	resp := c.postFormWith("/login", url.Values{"user": {name}, "password": {password}}, header...)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %q: status %d: %s", name, resp.StatusCode, resp.body)
	}
	return c
}

// postFormWith is postForm with extra headers (name, value, …).
func (c *chatClient) postFormWith(path string, v url.Values, header ...string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.do(req)
}

// postID posts text in the default room and returns its message ID, read
// from a stream of c's.
func postID(t *testing.T, c *chatClient, s *sseStream, text string) string {
	t.Helper()
	c.post(text)
	for {
		ev := s.next(t, "message", 10*time.Second)
		m, err := decodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		if m.Text == text {
			return m.ID
		}
	}
}

// want checks a response's status (and that a sentence came with an error).
func want(t *testing.T, what string, resp response, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d (%s), want %d", what, resp.StatusCode, strings.TrimSpace(resp.body), status)
	}
	if status >= 400 && strings.TrimSpace(resp.body) == "" {
		t.Fatalf("%s: %d without a sentence", what, status)
	}
}

type historyJSON struct {
	Messages []chat.Message `json:"messages"`
}

func historyByID(t *testing.T, c *chatClient) map[string]chat.Message {
	t.Helper()
	resp := c.get("/r/chat/history?before=" + url.QueryEscape(fmt.Sprintf("%d-0", time.Now().Add(time.Hour).UnixMilli())) + "&limit=100")
	want(t, "history", resp, http.StatusOK)
	var h historyJSON
	if err := json.Unmarshal([]byte(resp.body), &h); err != nil {
		t.Fatal(err)
	}
	out := map[string]chat.Message{}
	for _, m := range h.Messages {
		out[m.ID] = m
	}
	return out
}

// TestModDeleteEverywhere: a deleted message vanishes from streams on both
// instances, from the page, the history JSON and search, and a resume from
// before it does not bring it back; the history keeps a tombstone entry.
func TestModDeleteEverywhere(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL(), "-admins", "root")
	b := startServer(t, rs.URL(), "-admins", "root")
	alice := login(t, a.URL, "alice")
	bob := login(t, b.URL, "bob")
	aliceStream := alice.openStream("", "")
	bobStream := bob.openStream("", "")

	before := postID(t, alice, aliceStream, "an earlier message")
	doomed := postID(t, alice, aliceStream, "a regrettable message")
	kept := postID(t, alice, aliceStream, "a later message")

	want(t, "alice deletes her message", alice.postForm("/r/chat/delete", url.Values{"id": {doomed}}), http.StatusNoContent)
	ev := bobStream.next(t, "delete", 10*time.Second)
	var d struct{ Room, ID string }
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Room != "chat" || d.ID != doomed {
		t.Fatalf("delete event on the other instance: %s (%v)", ev.Data, err)
	}
	if ev.ID == "" || compareShownIDs(ev.ID, kept) <= 0 {
		t.Fatalf("delete event id %q: want a position after the last message %s", ev.ID, kept)
	}

	// Page, history JSON, search: gone; the others are there.
	page := bob.get("/")
	if strings.Contains(page.body, "m-"+doomed) || strings.Contains(page.body, "regrettable") || !strings.Contains(page.body, "m-"+kept) {
		t.Fatalf("page after the delete:\n%s", page.body)
	}
	h := historyByID(t, bob)
	if _, ok := h[doomed]; ok || len(h) != 2 {
		t.Fatalf("history JSON after the delete: %v", h)
	}
	if s := bob.get("/r/chat/search?q=regrettable"); strings.Contains(s.body, "m-"+doomed) {
		t.Fatalf("search finds the deleted message:\n%s", s.body)
	}

	// Resume from before the message, on both instances: the replay has
	// the later message and the delete, never the deleted one.
	for _, c := range []*chatClient{bob, crossInstance(t, bob, b.URL, a.URL)} {
		s := c.openStream(before, "")
		var got []string
		for {
			ev := <-s.Events
			if ev.Event == "presence" {
				break
			}
			got = append(got, ev.Event+" "+ev.Data)
		}
		s.Close()
		joined := strings.Join(got, "\n")
		if strings.Contains(joined, "regrettable") || !strings.Contains(joined, "a later message") || !strings.Contains(joined, `"id":"`+doomed+`"`) {
			t.Fatalf("resume from before the deleted message on %s replayed:\n%s", c.base, joined)
		}
	}

	// The history holds a tombstone (the delete entry naming it), not the text.
	xs, err := rs.Client().XRange(t.Context(), "chat:{chat}:history", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var tomb bool
	for _, x := range xs {
		if x.ID == doomed {
			t.Fatalf("the deleted message is still stored: %v", x.Values)
		}
		if m, _ := x.Values["m"].(string); strings.Contains(m, `"op":"delete"`) && strings.Contains(m, doomed) {
			tomb = true
		}
	}
	if !tomb {
		t.Fatalf("no tombstone in the history: %v", xs)
	}

	// Deleting it again: 404.
	want(t, "delete again", alice.postForm("/r/chat/delete", url.Values{"id": {doomed}}), http.StatusNotFound)
}

// TestModEditEverywhere: an edit reaches the other instance's stream, and
// history, the page and search show the new text as edited.
func TestModEditEverywhere(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL())
	b := startServer(t, rs.URL())
	alice := login(t, a.URL, "alice")
	bob := login(t, b.URL, "bob")
	aliceStream := alice.openStream("", "")
	bobStream := bob.openStream("", "")
	id := postID(t, alice, aliceStream, "helo wrold")

	want(t, "alice edits", alice.postForm("/r/chat/edit", url.Values{"id": {id}, "message": {"hello **world**"}}), http.StatusNoContent)
	ev := bobStream.next(t, "edit", 10*time.Second)
	var e struct {
		Room, ID, Text, HTML string
		Edited               *time.Time
	}
	if err := json.Unmarshal([]byte(ev.Data), &e); err != nil || e.ID != id || e.Text != "hello **world**" || e.HTML != "<p>hello <strong>world</strong></p>" || e.Edited == nil {
		t.Fatalf("edit event: %s (%v)", ev.Data, err)
	}
	m, ok := historyByID(t, bob)[id]
	if !ok || m.Text != "hello **world**" || m.Edited == nil {
		t.Fatalf("history JSON after the edit: %+v", m)
	}
	page := bob.get("/")
	if !strings.Contains(page.body, "<strong>world</strong>") || !strings.Contains(page.body, "(edited)") || strings.Contains(page.body, "wrold") {
		t.Fatalf("page after the edit:\n%s", page.body)
	}
	if s := bob.get("/r/chat/search?q=wrold"); strings.Contains(s.body, "m-"+id) {
		t.Fatal("search finds the old text")
	}
	if s := bob.get("/r/chat/search?q=world"); !strings.Contains(s.body, "m-"+id) {
		t.Fatal("search does not find the new text")
	}
	// Someone else cannot edit it.
	want(t, "bob edits alice's message", bob.postForm("/r/chat/edit", url.Values{"id": {id}, "message": {"mine now"}}), http.StatusForbidden)
}

// TestModPermissions: non-admins, unreserved admins and expired windows get 403.
func TestModPermissions(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-admins", "root,ghost", "-edit-window", "50ms")
	alice := login(t, srv.URL, "alice")
	bob := login(t, srv.URL, "bob")
	ghost := login(t, srv.URL, "ghost") // listed, but the name is not reserved
	root := loginWith(t, srv.URL, "root", "correct horse battery")
	s := alice.openStream("", "")
	id := postID(t, alice, s, "mine")

	want(t, "bob deletes alice's message", bob.postForm("/r/chat/delete", url.Values{"id": {id}}), http.StatusForbidden)
	want(t, "ghost deletes", ghost.postForm("/r/chat/delete", url.Values{"id": {id}}), http.StatusForbidden)
	for _, path := range []string{"/admin/mute", "/admin/ban", "/admin/kick", "/admin/slowmode"} {
		want(t, "bob on "+path, bob.postForm(path, url.Values{"user": {"alice"}, "duration": {"1m"}, "room": {"chat"}, "seconds": {"5"}}), http.StatusForbidden)
		want(t, "ghost on "+path, ghost.postForm(path, url.Values{"user": {"alice"}, "duration": {"1m"}, "room": {"chat"}, "seconds": {"5"}}), http.StatusForbidden)
	}
	want(t, "bob reads the audit log", bob.get("/admin/audit"), http.StatusForbidden)
	want(t, "logged out reads the audit log", newClient(t, srv.URL).get("/admin/audit"), http.StatusUnauthorized)

	// Past the window (on Redis's clock): the author can neither edit nor
	// delete; an admin can still delete.
	msOf := func(id string) int64 {
		var ms int64
		fmt.Sscanf(id, "%d-", &ms)
		return ms
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := rs.Client().Time(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if now.UnixMilli() > msOf(id)+60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis clock did not move")
		}
		time.Sleep(5 * time.Millisecond) // polling Redis's clock
	}
	want(t, "alice edits after the window", alice.postForm("/r/chat/edit", url.Values{"id": {id}, "message": {"late"}}), http.StatusForbidden)
	want(t, "alice deletes after the window", alice.postForm("/r/chat/delete", url.Values{"id": {id}}), http.StatusForbidden)
	want(t, "root deletes after the window", root.postForm("/r/chat/delete", url.Values{"id": {id}}), http.StatusNoContent)
	// An admin cannot be muted, banned or kicked.
	want(t, "root bans an admin", root.postForm("/admin/ban", url.Values{"user": {"ghost"}, "duration": {"1m"}}), http.StatusForbidden)
}

// TestModMute: a muted name (or address) reads but cannot post (403 with
// a sentence); lifting it or its expiry (the key's TTL) lets it post again.
func TestModMute(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-admins", "root", "-trusted-proxies", "127.0.0.1")
	root := loginWith(t, srv.URL, "root", "correct horse battery")
	bob := login(t, srv.URL, "bob")
	bob.post("before the mute")

	want(t, "mute bob", root.postForm("/admin/mute", url.Values{"user": {"Bob"}, "duration": {"10m"}, "reason": {"spam"}}), http.StatusNoContent)
	resp := bob.postForm("/post", url.Values{"message": {"muted?"}})
	want(t, "muted bob posts", resp, http.StatusForbidden)
	if !strings.Contains(resp.body, "muted until") {
		t.Fatalf("muted sentence: %q", resp.body)
	}
	want(t, "muted bob still reads", bob.get("/r/chat/history?before=9999999999999-0"), http.StatusOK)
	want(t, "muted bob is not shown typing", bob.postForm("/r/chat/typing", url.Values{}), http.StatusForbidden)
	s := bob.openStream("", "") // and streams
	s.Close()
	want(t, "unmute bob", root.postForm("/admin/mute", url.Values{"user": {"bob"}, "duration": {"0"}}), http.StatusNoContent)
	bob.post("after the unmute")

	// By address (as the trusted-proxy rules derive it), expiring on its own.
	carol := newClient(t, srv.URL)
	want(t, "carol logs in from 203.0.113.9", carol.postFormWith("/login", url.Values{"user": {"carol"}}, "X-Forwarded-For", "203.0.113.9"), http.StatusSeeOther)
	want(t, "mute 203.0.113.9", root.postForm("/admin/mute", url.Values{"ip": {"203.0.113.9"}, "duration": {"1s"}}), http.StatusNoContent)
	want(t, "carol posts from the muted address", carol.postFormWith("/post", url.Values{"message": {"hi"}}, "X-Forwarded-For", "203.0.113.9"), http.StatusForbidden)
	want(t, "carol posts from another address", carol.postFormWith("/post", url.Values{"message": {"hi"}}, "X-Forwarded-For", "203.0.113.10"), http.StatusNoContent)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := carol.postFormWith("/post", url.Values{"message": {"hi again"}}, "X-Forwarded-For", "203.0.113.9")
		if resp.StatusCode == http.StatusNoContent {
			break
		}
		if resp.StatusCode != http.StatusForbidden || time.Now().After(deadline) {
			t.Fatalf("mute did not expire: %d %s", resp.StatusCode, resp.body)
		}
		time.Sleep(50 * time.Millisecond) // polling for the key's expiry
	}
}

// endedWith waits for s's disconnect event and the end of the stream.
func endedWith(t *testing.T, what string, s *sseStream, reason string) {
	t.Helper()
	ev := s.next(t, "disconnect", 10*time.Second)
	if !strings.Contains(ev.Data, `"reason":"`+reason+`"`) {
		t.Fatalf("%s: disconnect %s, want reason %s", what, ev.Data, reason)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.Events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s: the stream did not end after its disconnect event", what)
		}
	}
}

// TestModBanAndKick: a ban closes the name's open streams on every instance
// with "banned", and refuses its logins and streams; a ban by address does
// the same for that address; a kick closes streams on both instances with
// "kicked" and ends the session, but allows a new login.
func TestModBanAndKick(t *testing.T) {
	rs := redistest.Start(t)
	a := startServer(t, rs.URL(), "-admins", "root", "-trusted-proxies", "127.0.0.1")
	b := startServer(t, rs.URL(), "-admins", "root", "-trusted-proxies", "127.0.0.1")
	root := loginWith(t, a.URL, "root", "correct horse battery")

	// Kick: both instances.
	dan := login(t, a.URL, "dan")
	danB := crossInstance(t, dan, a.URL, b.URL)
	sa, sb := dan.openStream("", ""), danB.openStream("", "")
	want(t, "kick dan", root.postForm("/admin/kick", url.Values{"user": {"dan"}}), http.StatusNoContent)
	endedWith(t, "dan@A", sa, "kicked")
	endedWith(t, "dan@B", sb, "kicked")
	want(t, "kicked dan's cookie", dan.get("/whoami"), http.StatusUnauthorized)
	login(t, b.URL, "dan") // may come back

	// Ban by name.
	bob := login(t, a.URL, "bob")
	bobB := crossInstance(t, bob, a.URL, b.URL)
	sa, sb = bob.openStream("", ""), bobB.openStream("", "")
	want(t, "ban bob", root.postForm("/admin/ban", url.Values{"user": {"bob"}, "duration": {"1h"}}), http.StatusNoContent)
	endedWith(t, "bob@A", sa, "banned")
	endedWith(t, "bob@B", sb, "banned")
	resp := newClient(t, b.URL).postForm("/login", url.Values{"user": {"bob"}})
	want(t, "banned bob logs in", resp, http.StatusForbidden)
	if !strings.Contains(resp.body, "banned") {
		t.Fatalf("ban sentence on the login page: %s", resp.body)
	}

	// Ban by address: carol's session from 198.51.100.7 ends, that address
	// cannot log in or stream; another address can.
	carol := newClient(t, a.URL)
	want(t, "carol logs in", carol.postFormWith("/login", url.Values{"user": {"carol"}}, "X-Forwarded-For", "198.51.100.7"), http.StatusSeeOther)
	sc := carol.openStream("", "")
	want(t, "ban 198.51.100.7", root.postForm("/admin/ban", url.Values{"ip": {"198.51.100.7"}, "duration": {"1h"}}), http.StatusNoContent)
	endedWith(t, "carol", sc, "banned")
	want(t, "login from the banned address", newClient(t, b.URL).postFormWith("/login", url.Values{"user": {"erin"}}, "X-Forwarded-For", "198.51.100.7"), http.StatusForbidden)
	erin := newClient(t, b.URL)
	want(t, "login from another address", erin.postFormWith("/login", url.Values{"user": {"erin"}}, "X-Forwarded-For", "198.51.100.8"), http.StatusSeeOther)
	req, _ := http.NewRequest(http.MethodGet, b.URL+"/stream", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp = erin.do(req)
	want(t, "stream from the banned address", resp, http.StatusForbidden)
	if !strings.Contains(resp.body, "banned") {
		t.Fatalf("stream refusal: %s", resp.body)
	}

	// Lifting the ban lets bob in again.
	want(t, "unban bob", root.postForm("/admin/ban", url.Values{"user": {"bob"}, "duration": {"0"}}), http.StatusNoContent)
	login(t, a.URL, "bob")
}

// TestModAuditAndSlowMode: the audit log lists every action, newest first;
// slow mode is the Redis key the posting limit reads.
func TestModAuditAndSlowMode(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-admins", "root")
	root := loginWith(t, srv.URL, "root", "correct horse battery")
	alice := login(t, srv.URL, "alice")
	s := alice.openStream("", "")
	id := postID(t, alice, s, "to be removed")

	want(t, "slow mode 30", root.postForm("/admin/slowmode", url.Values{"room": {"dev"}, "seconds": {"30"}}), http.StatusNoContent)
	if v, err := rs.Client().Get(t.Context(), "chat:slowmode:dev").Result(); err != nil || v != "30" {
		t.Fatalf("chat:slowmode:dev = %q (%v), want 30", v, err)
	}
	want(t, "slow mode off", root.postForm("/admin/slowmode", url.Values{"room": {"dev"}, "seconds": {"0"}}), http.StatusNoContent)
	if n := rs.Client().Exists(t.Context(), "chat:slowmode:dev").Val(); n != 0 {
		t.Fatal("slow mode 0 left the key")
	}
	want(t, "mute", root.postForm("/admin/mute", url.Values{"user": {"alice"}, "duration": {"5m"}, "reason": {"flooding"}}), http.StatusNoContent)
	want(t, "ban ip", root.postForm("/admin/ban", url.Values{"ip": {"::ffff:192.0.2.1"}, "duration": {"2h"}}), http.StatusNoContent)
	want(t, "kick", root.postForm("/admin/kick", url.Values{"user": {"alice"}}), http.StatusNoContent)
	want(t, "delete", root.postForm("/r/chat/delete", url.Values{"id": {id}}), http.StatusNoContent)

	resp := root.get("/admin/audit")
	want(t, "audit", resp, http.StatusOK)
	var log struct{ Entries []auditEntry }
	if err := json.Unmarshal([]byte(resp.body), &log); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range log.Entries {
		if e.Actor != "root" || e.Time.IsZero() {
			t.Errorf("audit entry without actor or time: %+v", e)
		}
		got = append(got, e.Action+" "+e.User+e.IP+e.Room+" "+e.ID+e.Duration+e.Reason)
	}
	wantLog := []string{"delete chat " + id, "kick alice ", "ban 192.0.2.1 2h0m0s", "mute alice 5m0sflooding", "slowmode dev ", "slowmode dev "}
	if strings.Join(got, "|") != strings.Join(wantLog, "|") {
		t.Fatalf("audit log:\n%q\nwant\n%q", got, wantLog)
	}
	want(t, "audit limit 1", root.get("/admin/audit?limit=1"), http.StatusOK)
	if n := rs.Client().LLen(t.Context(), auditKey).Val(); n != 6 {
		t.Fatalf("audit list holds %d entries", n)
	}
}

// TestModBadInput: every malformed moderation request is a 4xx with a
// sentence, never a 500; cross-site POSTs are refused; requests are rate-limited.
func TestModBadInput(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, rs.URL(), "-admins", "root", "-rate-mod", "40")
	root := loginWith(t, srv.URL, "root", "correct horse battery")
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
	}{
		{"/r/chat/delete", url.Values{}, 400},
		{"/r/chat/delete", url.Values{"id": {"nope"}}, 400},
		{"/r/chat/delete", url.Values{"id": {"0-0"}}, 400},
		{"/r/chat/delete", url.Values{"id": {"1-0", "2-0"}}, 400},
		{"/r/chat/delete", url.Values{"id": {"1-0"}}, 404},
		{"/r/Bad!/delete", url.Values{"id": {"1-0"}}, 400},
		{"/r/chat/edit", url.Values{"id": {"1-0"}}, 400},
		{"/r/chat/edit", url.Values{"id": {"1-0"}, "message": {"  "}}, 400},
		{"/r/chat/edit", url.Values{"id": {"1-0"}, "message": {strings.Repeat("x", 2001)}}, 413},
		{"/r/chat/edit", url.Values{"id": {"1-0"}, "message": {"a\x00b"}}, 400},
		{"/r/chat/edit", url.Values{"id": {"1-0"}, "message": {"fine"}}, 404},
		{"/admin/mute", url.Values{"duration": {"1m"}}, 400},
		{"/admin/mute", url.Values{"user": {"bob"}}, 400},
		{"/admin/mute", url.Values{"user": {"bob"}, "ip": {"192.0.2.1"}, "duration": {"1m"}}, 400},
		{"/admin/mute", url.Values{"user": {"\u202e"}, "duration": {"1m"}}, 400},
		{"/admin/mute", url.Values{"user": {strings.Repeat("b", 1000)}, "duration": {"1m"}}, 400},
		{"/admin/ban", url.Values{"ip": {"300.1.1.1"}, "duration": {"1m"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"soon"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"-1m"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"9000h"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"1ms"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"1m"}, "reason": {"line\nbreak"}}, 400},
		{"/admin/ban", url.Values{"user": {"bob"}, "duration": {"1m"}, "reason": {strings.Repeat("r", 201)}}, 400},
		{"/admin/kick", url.Values{}, 400},
		{"/admin/slowmode", url.Values{"room": {"chat"}}, 400},
		{"/admin/slowmode", url.Values{"room": {"no such room!"}, "seconds": {"5"}}, 400},
		{"/admin/slowmode", url.Values{"room": {"chat"}, "seconds": {"-1"}}, 400},
		{"/admin/slowmode", url.Values{"room": {"chat"}, "seconds": {"86401"}}, 400},
		{"/admin/slowmode", url.Values{"room": {"chat"}, "seconds": {"1.5"}}, 400},
	} {
		resp := root.postForm(tc.path, tc.form)
		want(t, fmt.Sprintf("POST %s %v", tc.path, tc.form), resp, tc.status)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		want(t, "audit "+q, root.get("/admin/audit?"+q), http.StatusBadRequest)
	}
	// Too large a body: 413.
	want(t, "huge form", root.postForm("/admin/kick", url.Values{"user": {strings.Repeat("x", 70<<10)}}), http.StatusRequestEntityTooLarge)

	// Cross-site POSTs (the browser says so) are refused before any handler.
	for _, path := range []string{"/r/chat/delete", "/r/chat/edit", "/admin/mute", "/admin/ban", "/admin/kick", "/admin/slowmode"} {
		resp := root.postFormWith(path, url.Values{"user": {"bob"}, "duration": {"1m"}}, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
		want(t, "cross-site "+path, resp, http.StatusForbidden)
	}
	if n := rs.Client().LLen(t.Context(), auditKey).Val(); n != 0 {
		t.Fatalf("refused requests wrote %d audit entries", n)
	}

	// Rate limit: -rate-mod per minute, shared by every moderation route.
	limited := false
	for range 50 {
		resp := root.postForm("/admin/kick", url.Values{"user": {"bob"}})
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp.Header.Get("Retry-After") != ""
			break
		}
		want(t, "kick within the limit", resp, http.StatusNoContent)
	}
	if !limited {
		t.Fatal("50 moderation requests in a row were never refused with 429 and Retry-After")
	}
}

// TestModEmbeddedRedis: the moderation scripts (cjson, TIME, XDEL) and the
// TTL-based mutes work on the embedded Redis of `go run .` too.
func TestModEmbeddedRedis(t *testing.T) {
	srv := startServer(t, "", "-data-dir", "off", "-admins", "root")
	root := loginWith(t, srv.URL, "root", "correct horse battery")
	alice := login(t, srv.URL, "alice")
	s := alice.openStream("", "")
	doomed := postID(t, alice, s, "delete me")
	edited := postID(t, alice, s, "edit me")
	want(t, "delete", alice.postForm("/r/chat/delete", url.Values{"id": {doomed}}), http.StatusNoContent)
	s.next(t, "delete", 10*time.Second)
	want(t, "edit", alice.postForm("/r/chat/edit", url.Values{"id": {edited}, "message": {"edited"}}), http.StatusNoContent)
	s.next(t, "edit", 10*time.Second)
	h := historyByID(t, alice)
	if _, ok := h[doomed]; ok || h[edited].Text != "edited" {
		t.Fatalf("history on the embedded Redis: %v", h)
	}
	want(t, "bob edits alice's", login(t, srv.URL, "bob").postForm("/r/chat/edit", url.Values{"id": {edited}, "message": {"x"}}), http.StatusForbidden)
	want(t, "mute alice", root.postForm("/admin/mute", url.Values{"user": {"alice"}, "duration": {"1m"}}), http.StatusNoContent)
	want(t, "muted alice posts", alice.postForm("/post", url.Values{"message": {"hi"}}), http.StatusForbidden)
}
