package main

import (
	"encoding/json"
	"html/template"
	"time"

	"chatroom/internal/broker"
	"chatroom/internal/chat"
	"chatroom/internal/fanout"
	"chatroom/internal/markup"
	"chatroom/internal/sse"
)

// The events a stream carries, encoded once and shared by every stream;
// every JSON names its room:
//
//	message     a chat message: id: is the stream's position, data its JSON
//	            (chat.Message, plus "html": its text rendered, internal/markup)
//	delete      {"room","id"}: message id was deleted (id: the stream's position)
//	edit        {"room","id","text","html","edited"}: message id was edited
//	presence    {"room","users":[{"user","uid"}…],"count"}: who is online in the room (stream start)
//	join, leave {"room","user","uid"}: someone came online in the room, or went
//	typing      {"room","user","uid"}: someone is typing (shown a few seconds)
//	status      {"state":"degraded"|"ok"}: delivery through Redis broke / is back
//	notice      {"code","text"[,"before","room"]}: history-trimmed, bad-last-event-id
//	disconnect  {"reason"}: the server ends this stream (slow, shutdown, logged-out, banned, kicked)
//
// Only message events carry an ID, so the browser's Last-Event-ID stays on
// the last message it received. The ID is the stream's composite position
// (one entry per room of the stream, chat.ParsePositions): the hub writes
// it per stream; the shared encoding holds the one-room form.

// renderedMessage is a message event's data: the message as stored, its raw
// text for clients that show text, and the safe HTML the page inserts.
type renderedMessage struct {
	chat.Message
	HTML template.HTML `json:"html"`
}

// messageEvent is the event of m; its text is rendered here, once per
// message and instance, like the rest of its encoding.
func messageEvent(md *markup.Renderer, m chat.Message) *fanout.Event {
	id, _ := chat.ParseID(m.ID)
	name := "message"
	var v any = renderedMessage{Message: m, HTML: md.HTML(m.Text)}
	switch m.Op { // a moderation entry: its own event, at its own position
	case chat.OpDelete:
		name, v = "delete", deletion{Room: m.Room, ID: m.Target}
	case chat.OpEdit:
		name, v = "edit", edition{Room: m.Room, ID: m.Target, Text: m.Text, HTML: md.HTML(m.Text), Edited: m.Edited}
	}
	data, err := json.Marshal(v)
	if err != nil { // a chat.Message always encodes
		data = []byte(`{}`)
	}
	entry := string(chat.AppendEntry(make([]byte, 0, len(m.Room)+24), m.Room, id))
	// The entry is a room name and an ID, and the JSON is valid UTF-8
	// without raw line breaks (encoding/json escapes them), so this cannot
	// fail.
	wire, _ := sse.AppendEvent(make([]byte, 0, len(data)+len(entry)+32), entry, name, data)
	return &fanout.Event{ID: id, Room: m.Room, IDLen: len("id: ") + len(entry) + 1, Wire: wire}
}

// deletion is a delete event's data: message id of room is gone.
type deletion struct {
	Room string `json:"room"`
	ID   string `json:"id"`
}

// edition is an edit event's data: message id of room now reads text.
type edition struct {
	Room   string        `json:"room"`
	ID     string        `json:"id"`
	Text   string        `json:"text"`
	HTML   template.HTML `json:"html"`
	Edited *time.Time    `json:"edited"`
}

// roomEvent encodes an event of one room without an ID.
func roomEvent(room, name string, data any) *fanout.Event {
	ev := controlEvent(name, data)
	ev.Room = room
	return ev
}

// controlEvent encodes an event without an ID.
func controlEvent(name string, data any) *fanout.Event {
	j, err := json.Marshal(data)
	if err != nil { // only for unencodable types: a programming error
		j = []byte(`{}`)
	}
	wire, _ := sse.AppendEvent(nil, "", name, j)
	return &fanout.Event{Wire: wire}
}

// notice is the data of an "event: notice": something the page shows.
type notice struct {
	Code   string `json:"code"`
	Text   string `json:"text"`
	Before string `json:"before,omitempty"` // history-trimmed: older messages than this ID were not replayed
	Room   string `json:"room,omitempty"`   // the room it is about, if one
}

func noticeEvent(n notice) *fanout.Event { return controlEvent("notice", n) }

func statusEvent(degraded bool) *fanout.Event {
	state := "ok"
	if degraded {
		state = "degraded"
	}
	return controlEvent("status", map[string]string{"state": state})
}

func disconnectEvent(r fanout.Reason) *fanout.Event {
	return controlEvent("disconnect", map[string]string{"reason": r.String()})
}

// pingEvent is the heartbeat: a comment, ignored by EventSource, that keeps
// proxies from closing idle streams and exposes dead peers to writes.
func pingEvent() *fanout.Event {
	return &fanout.Event{Wire: sse.AppendEnd(sse.AppendComment(nil, "ping"))}
}

// streamPrelude is the first thing every stream sends: the reconnection
// delay, so the browser reports the stream open at once.
func streamPrelude(retry time.Duration) []byte {
	return sse.AppendEnd(sse.AppendComment(sse.AppendRetry(nil, retry), "connected"))
}

// hubSink hands what the broker's subscription delivers to the hub: each
// message is encoded once here, whatever the number of streams.
type hubSink struct {
	hub *fanout.Hub
	md  *markup.Renderer
}

// Deliver broadcasts m, timed from its publish (Event.Born) for the
// delivery latency.
func (s hubSink) Deliver(m chat.Message) {
	ev := messageEvent(s.md, m)
	if !m.Time.IsZero() {
		ev.Born = m.Time.UnixNano()
	}
	s.hub.Broadcast(m.Room, ev)
}
func (s hubSink) SetDegraded(d bool) { s.hub.SetDegraded(d) }
func (s hubSink) EndSession(sid, reason string) {
	r := fanout.ReasonLoggedOut
	switch reason {
	case broker.EndBanned:
		r = fanout.ReasonBanned
	case broker.EndKicked:
		r = fanout.ReasonKicked
	}
	s.hub.EndSessionFor(sid, r)
}
func (s hubSink) Signal(sig chat.Signal) {
	kind := sig.Kind
	sig.Kind = "" // the event's name says it
	s.hub.Broadcast(sig.Room, roomEvent(sig.Room, kind, sig))
}
