package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"chatroom/internal/chat"
)

// fakeChat is a small in-test implementation of the chat server's HTTP
// interface, to test the bench without the real server: the default room
// (/post, /stream) and rooms (/r/{room}/join, leave, post, online), with
// presence events on the streams. Faults can be injected to check that the
// bench notices them.
type fakeChat struct {
	hijack  bool // answer streams on a hijacked, close-delimited connection
	dropSeq int  // never deliver this message index to the first subscriber (-1: none)
	dupSeq  int  // deliver this message index twice (-1: none)
	// leakSeq is a message index delivered to every stream, whatever its
	// rooms (-1: none).
	leakSeq int
	// closeAfter > 0 ends the first subscriber's first stream after that
	// many messages (it must reconnect with last_event_id and lose nothing).
	closeAfter int
	// writeTimeout > 0 ends a stream whose write blocks that long (as the
	// real server evicts stalled clients).
	writeTimeout time.Duration
	// hide, if set, leaves the users it returns true for off every online
	// list (GET and events).
	hide func(user string) bool
	// noJoins sends no join and leave events (presence events still).
	noJoins bool

	mu     sync.Mutex // guards everything below
	msgs   []fakeMsg  // in order
	subs   map[chan []byte]*fakeStream
	nsubs  int
	lastMs int64
	seqMs  int
	joined map[string][]string       // user → joined rooms
	online map[string]map[string]int // room → user → open streams
}

// fakeMaxRooms is the most rooms a user of the fake may have joined, as
// the real server's default.
const fakeMaxRooms = 20

type fakeMsg struct {
	room, id string
	ev       []byte // encoded SSE event
}

type fakeStream struct {
	num   int
	user  string
	rooms []string
}

func newFakeChat() *fakeChat {
	return &fakeChat{dropSeq: -1, dupSeq: -1, leakSeq: -1, subs: map[chan []byte]*fakeStream{},
		joined: map[string][]string{}, online: map[string]map[string]int{}}
}

func (f *fakeChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := r.Method + " " + r.URL.Path
	room := chat.DefaultRoom
	if rest, ok := strings.CutPrefix(r.URL.Path, "/r/"); ok {
		name, action, _ := strings.Cut(rest, "/")
		room, route = name, r.Method+" /r/{room}/"+action
	}
	if route == "GET /readyz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if route == "POST /login" {
		user := r.FormValue("user")
		if user == "" || len(user) > 32 {
			http.Error(w, "bad name", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.joined[user] = []string{chat.DefaultRoom}
		f.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "session", Value: user, Path: "/", HttpOnly: true})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c, err := r.Cookie("session")
	if err != nil {
		http.Error(w, "login", http.StatusUnauthorized)
		return
	}
	user := c.Value
	switch route {
	case "POST /post", "POST /r/{room}/post":
		f.mu.Lock()
		joined := slices.Contains(f.joined[user], room)
		f.mu.Unlock()
		if !joined && room != chat.DefaultRoom {
			http.Error(w, "join the room first", http.StatusForbidden)
			return
		}
		f.publish(room, user, r.FormValue("message"))
		w.WriteHeader(http.StatusNoContent)
	case "POST /r/{room}/join", "POST /r/{room}/leave":
		f.mu.Lock()
		defer f.mu.Unlock()
		rooms := slices.DeleteFunc(f.joined[user], func(j string) bool { return j == room })
		if strings.HasSuffix(route, "join") {
			if len(rooms) >= fakeMaxRooms {
				http.Error(w, "too many rooms", http.StatusConflict)
				return
			}
			rooms = append(rooms, room)
		}
		f.joined[user] = rooms
		w.WriteHeader(http.StatusNoContent)
	case "GET /r/{room}/online":
		f.mu.Lock()
		data := f.onlineList(room)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	case "GET /stream":
		f.stream(w, r, user)
	default:
		http.NotFound(w, r)
	}
}

// wireEntry is the entry of room's id in a stream position.
func wireEntry(room, id string) string {
	if room == chat.DefaultRoom {
		return id
	}
	return room + "=" + id
}

func (f *fakeChat) publish(room, user, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := time.Now().UnixMilli()
	if ms <= f.lastMs {
		ms = f.lastMs
		f.seqMs++
	} else {
		f.lastMs, f.seqMs = ms, 0
	}
	id := fmt.Sprintf("%d-%d", ms, f.seqMs)
	data, _ := json.Marshal(map[string]string{"id": id, "room": room, "user": user, "uid": "u", "text": text,
		"time": time.Now().Format(time.RFC3339Nano)})
	ev := []byte("id: " + wireEntry(room, id) + "\nevent: message\ndata: " + string(data) + "\n\n")
	n := len(f.msgs)
	f.msgs = append(f.msgs, fakeMsg{room, id, ev})
	for ch, s := range f.subs {
		if (n == f.dropSeq && s.num == 0) || (n != f.leakSeq && !slices.Contains(s.rooms, room)) {
			continue
		}
		ch <- ev
		if n == f.dupSeq {
			ch <- ev
		}
	}
}

func (f *fakeChat) visible(user string) bool { return f.hide == nil || !f.hide(user) }

// onlineList is room's list as JSON; f.mu must be held.
func (f *fakeChat) onlineList(room string) []byte {
	l := onlineList{Room: room, Users: []onlineUser{}}
	for u, n := range f.online[room] {
		if n > 0 && f.visible(u) {
			l.Users = append(l.Users, onlineUser{u, u})
		}
	}
	n := len(l.Users)
	l.Count = &n
	data, _ := json.Marshal(l)
	return data
}

// announce sends a join or leave of user in room to the room's other
// streams; f.mu must be held.
func (f *fakeChat) announce(kind, room, user string) {
	if f.noJoins || !f.visible(user) {
		return
	}
	data, _ := json.Marshal(map[string]string{"room": room, "user": user, "uid": user})
	ev := []byte("event: " + kind + "\ndata: " + string(data) + "\n\n")
	for ch, s := range f.subs {
		if s.user != user && slices.Contains(s.rooms, room) {
			ch <- ev
		}
	}
}

func (f *fakeChat) stream(w http.ResponseWriter, r *http.Request, user string) {
	ch := make(chan []byte, 100000)
	f.mu.Lock()
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	rooms := slices.Clone(f.joined[user])
	for _, room := range rooms {
		entry, ok := roomEntry([]byte(last), room)
		replay := false
		for _, m := range f.msgs {
			if m.room != room {
				continue
			}
			if replay {
				ch <- m.ev
			}
			replay = replay || (ok && m.id == string(entry))
		}
	}
	me := &fakeStream{num: f.nsubs, user: user, rooms: rooms}
	f.subs[ch] = me
	f.nsubs++
	for _, room := range rooms {
		if f.online[room] == nil {
			f.online[room] = map[string]int{}
		}
		if f.online[room][user]++; f.online[room][user] == 1 {
			f.announce("join", room, user)
		}
		ch <- []byte("event: presence\ndata: " + string(f.onlineList(room)) + "\n\n")
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		for _, room := range rooms {
			if f.online[room][user]--; f.online[room][user] == 0 {
				f.announce("leave", room, user)
			}
		}
		f.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		if f.writeTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(f.writeTimeout))
		}
		_, err := w.Write(b)
		return err
	}
	flush := rc.Flush
	gone := r.Context().Done()
	if f.hijack {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		closed := make(chan struct{})
		go func() { // the request context does not end with a hijacked connection
			_, _ = conn.Read(make([]byte, 1))
			close(closed)
		}()
		gone = closed
		bw := bufio.NewWriter(conn)
		write = func(b []byte) error { _, err := bw.Write(b); return err }
		flush = bw.Flush
		_ = write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"))
	} else {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
	}
	if write([]byte("retry: 1000\n\n: ping\n\nevent: status\ndata: {\"online\":1}\n\n")) != nil || flush() != nil {
		return
	}
	for written := 0; ; written++ {
		if me.num == 0 && f.closeAfter > 0 && written == f.closeAfter {
			return
		}
		select {
		case <-gone:
			return
		case ev := <-ch:
			if write(ev) != nil || flush() != nil {
				return
			}
		}
	}
}
