package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"chatroom/internal/chat"
)

// Rooms in the bench. In a scenario with rooms, subscriber j is its own
// user, in room j mod R, streaming only that room (it leaves the default
// room it joined at login), and message i is posted to room i mod R: so
// every room gets the same share of subscribers and of messages.

// roomNames returns the n room names of a run: "r<tag>-<i>", so that runs
// against a shared Redis (-redis, -target) never see each other's rooms.
func roomNames(tag string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "r" + tag + "-" + strconv.Itoa(i)
	}
	return out
}

// roomPath is the path of a room's route: "/r/<room>/<action>", or for the
// default room's post the tutorial's "/post".
func roomPath(room, action string) string {
	if room == "" || (room == chat.DefaultRoom && action == "post") {
		return "/" + action
	}
	return "/r/" + room + "/" + action
}

// roomEntry returns the entry of room in a composite stream position
// ("<ms>-<seq>,dev=<ms>-<seq>,…": entries separated by commas, the default
// room's bare, every other one "<room>=<id>"), or false if it has none.
// It allocates nothing.
func roomEntry(pos []byte, room string) ([]byte, bool) {
	for len(pos) > 0 {
		entry := pos
		if i := bytes.IndexByte(pos, ','); i >= 0 {
			entry, pos = pos[:i], pos[i+1:]
		} else {
			pos = nil
		}
		name, id, named := bytes.Cut(entry, []byte("="))
		switch {
		case !named && room == chat.DefaultRoom:
			return entry, true
		case named && string(name) == room:
			return id, true
		}
	}
	return nil, false
}

// roomAction posts to /r/<room>/<action> (join, leave) as a script would
// (Accept: application/json, so no redirect) and wants 204. Cookies the
// answer sets replace the session's.
func (b *bench) roomAction(ctx context.Context, sess *session, room, action string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sess.target+roomPath(room, action), strings.NewReader(""))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	sess.addCookies(req)
	resp, err := b.login.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, room, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST %s: %s %q", roomPath(room, action), resp.Status, body)
	}
	sess.update(resp.Cookies())
	return nil
}

// onlineUser is one entry of an online list.
type onlineUser struct {
	User string `json:"user"`
	UID  string `json:"uid"`
}

// onlineList is the body of GET /r/{room}/online and the data of a
// presence event.
type onlineList struct {
	Room  string       `json:"room"`
	Users []onlineUser `json:"users"`
	Count *int         `json:"count"`
}

// checkOnline returns nil if data is the online list of room holding
// exactly the users in want (by display name), with a count that matches,
// else an error saying what differs.
func checkOnline(data []byte, room string, want map[string]bool) error {
	var l onlineList
	if err := json.Unmarshal(data, &l); err != nil {
		return fmt.Errorf("online list of %s: %w", room, err)
	}
	if l.Room != room {
		return fmt.Errorf("online list of %s says room %q", room, l.Room)
	}
	if l.Count == nil || *l.Count != len(l.Users) {
		return fmt.Errorf("online list of %s: count %s for %d users", room, fmtCount(l.Count), len(l.Users))
	}
	have := make(map[string]bool, len(l.Users))
	for _, u := range l.Users {
		if have[u.User] {
			return fmt.Errorf("online list of %s: %q listed twice", room, u.User)
		}
		have[u.User] = true
	}
	return nameDiff(room, have, want)
}

func fmtCount(c *int) string {
	if c == nil {
		return "missing"
	}
	return strconv.Itoa(*c)
}

// nameDiff returns nil if have and want hold the same names, else an error
// with how many are missing and unexpected (and the first of each, sorted).
func nameDiff(room string, have, want map[string]bool) error {
	var missing, extra []string
	for n := range want {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	for n := range have {
		if !want[n] {
			extra = append(extra, n)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	first := func(ns []string) string {
		if len(ns) == 0 {
			return ""
		}
		return " (" + slices.Min(ns) + ")"
	}
	return fmt.Errorf("online list of %s: %d of %d missing%s, %d unexpected%s",
		room, len(missing), len(want), first(missing), len(extra), first(extra))
}

// onlineTracker is an observer's view of its room's online list, built
// from the stream's events as a page builds it: a presence event replaces
// the list, join adds a user, leave removes one. It notes since when the
// list has been exactly want. Only the observer's goroutine calls apply.
type onlineTracker struct {
	room string
	want map[string]bool
	have map[string]bool

	// correctSince is the unix ns since which the list has been correct,
	// 0 while it is not; read by the run while the observer updates it.
	correctSince atomic.Int64
	events       int64 // presence, join and leave events of the room applied
	bad          int64 // such events that do not parse or name another room
}

func newOnlineTracker(room string, want map[string]bool) *onlineTracker {
	return &onlineTracker{room: room, want: want, have: map[string]bool{}}
}

// apply takes one presence, join or leave event read at now (unix ns).
func (t *onlineTracker) apply(typ string, data []byte, now int64) {
	switch typ {
	case "presence":
		var l onlineList
		if err := json.Unmarshal(data, &l); err != nil || l.Room != t.room {
			t.bad++
			return
		}
		clear(t.have)
		for _, u := range l.Users {
			t.have[u.User] = true
		}
	case "join", "leave":
		var u struct {
			Room string `json:"room"`
			User string `json:"user"`
		}
		if err := json.Unmarshal(data, &u); err != nil || u.Room != t.room || u.User == "" {
			t.bad++
			return
		}
		if typ == "join" {
			t.have[u.User] = true
		} else {
			delete(t.have, u.User)
		}
	default:
		return
	}
	t.events++
	correct := nameDiff(t.room, t.have, t.want) == nil
	switch since := t.correctSince.Load(); {
	case correct && since == 0:
		t.correctSince.Store(max(now, 1))
	case !correct && since != 0:
		t.correctSince.Store(0)
	}
}
