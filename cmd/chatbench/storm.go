package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The storm scenario: the subscribers are logged in and in their rooms
// beforehand (as after a restart: the users exist, their pages reconnect),
// and then open their streams evenly spread over the sending time while
// the messages are posted, so the server announces every arrival to the
// room (presence). One observer stream per room, connected before, follows
// the room's online list from its presence, join and leave events; after
// the last subscriber connected, GET /r/{room}/online is polled for every
// room too. Both must show exactly the room's subscribers and observer.

// stormResult is what a storm measured besides the messages.
type stormResult struct {
	Connected int `json:"connected"` // subscribers whose stream opened (of subs)
	// ConnectSpanSec is the time from the first scheduled stream open to
	// the last subscriber's connect.
	ConnectSpanSec float64 `json:"connect_span_s"`
	// NoPresence subscribers connected but never got their room's
	// presence event (so no message was expected on them) within
	// -online-timeout after the last connect; PresenceSec is the time from
	// the last connect until every other one had.
	NoPresence  int     `json:"no_presence"`
	PresenceSec float64 `json:"presence_s"`
	Observers   int     `json:"observers"`
	// PollSec is the slowest room's time from the last connect until GET
	// /r/{room}/online was correct; PollWrong rooms never were within
	// -online-timeout (they are not in PollSec).
	PollSec   float64 `json:"online_poll_s"`
	PollWrong int     `json:"online_poll_wrong_rooms"`
	// EventsSec and EventsWrong are the same for the observers' lists.
	EventsSec   float64 `json:"online_events_s"`
	EventsWrong int     `json:"online_events_wrong_rooms"`
	BadEvents   int64   `json:"bad_presence_events"` // presence/join/leave events that did not parse or named another room
	// ObserverReconnects and ObserverDisconnects count the observers'
	// stream restarts and disconnect events: a resumed stream's list
	// depends on the presence event sent after the resume.
	ObserverReconnects  int64 `json:"observer_reconnects"`
	ObserverDisconnects int64 `json:"observer_disconnects"`
	// FirstWrong says how the first wrong room's list differed.
	FirstWrong string `json:"first_wrong,omitempty"`
}

// problems lists what a check rejects in a storm.
func (sr *stormResult) problems(subs int) []string {
	var p []string
	if sr.Connected < subs {
		p = append(p, fmt.Sprintf("%d of %d storm subscribers connected", sr.Connected, subs))
	}
	if sr.NoPresence > 0 {
		p = append(p, fmt.Sprintf("%d subscribers got no presence event", sr.NoPresence))
	}
	if sr.PollWrong > 0 || sr.EventsWrong > 0 {
		p = append(p, fmt.Sprintf("online lists wrong in %d rooms (GET) and %d (observers): %s", sr.PollWrong, sr.EventsWrong, sr.FirstWrong))
	}
	if sr.BadEvents > 0 {
		p = append(p, fmt.Sprintf("%d bad presence events", sr.BadEvents))
	}
	return p
}

// startObservers connects one observer per room before the storm and
// waits for their presence events. Observer r is logged in as obs[r], in
// room r alone, and wants the room's subscribers and itself on the list.
func (b *bench) startObservers(ctx context.Context, f *fleet, st *runState, obs []session, subs []*subscriber) ([]*subscriber, error) {
	want := make([]map[string]bool, len(obs))
	for r := range want {
		want[r] = map[string]bool{obs[r].user: true}
	}
	for _, s := range subs {
		want[s.room][s.sess.user] = true
	}
	observers := make([]*subscriber, len(obs))
	for r := range obs {
		observers[r] = &subscriber{sess: obs[r], room: r, online: newOnlineTracker(st.roomName(r), want[r])}
	}
	if err := f.startAll(ctx, observers); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(b.cfg.connectTimeout)
	n, err := f.waitConns(ctx, int64(len(observers)), deadline)
	if err != nil {
		return nil, err
	}
	if n < int64(len(observers)) {
		return nil, fmt.Errorf("observers: %w", f.connectError(n, int64(len(observers))))
	}
	live := func() int {
		c := 0
		for _, o := range observers {
			if o.liveAt.Load() != 0 {
				c++
			}
		}
		return c
	}
	for i := 0; live() < len(observers) && time.Now().Before(deadline) && i < maxWaitPolls; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(connPoll):
		}
	}
	if c := live(); c < len(observers) {
		return nil, fmt.Errorf("only %d of %d observers got a presence event for their room within %v", c, len(observers), b.cfg.connectTimeout)
	}
	b.logf("%d observers connected", len(observers))
	return observers, nil
}

// storm opens the subscribers' streams evenly over the sending time
// while posting the messages, waits for every subscriber to connect (at
// most -connect-timeout after the sending time) and then for the online
// lists. It returns the sender's worst lateness.
func (b *bench) storm(ctx context.Context, s scenario, f *fleet, st *runState, subs, observers []*subscriber,
	senders []session, posts []postRecord, firstSend time.Time, e *env, res *result) (time.Duration, error) {
	cfg := b.cfg
	sr := &stormResult{Observers: len(observers)}
	res.Storm = sr
	b.logf("storm: opening %d streams over %v while posting %d messages at %g/s", len(subs), cfg.duration, len(posts), s.Rate)
	opened := make(chan error, 1)
	go func() { opened <- f.openOnSchedule(ctx, subs, firstSend, cfg.duration) }()
	var lag time.Duration
	var err error
	if len(posts) > 0 {
		lag, err = b.send(ctx, s, st, senders, posts, firstSend)
	}
	if oerr := <-opened; err == nil {
		err = oerr
	}
	if err != nil {
		return lag, err
	}
	want := int64(len(observers) + len(subs))
	n, err := f.waitConns(ctx, want, firstSend.Add(cfg.duration+cfg.connectTimeout))
	if err != nil {
		return lag, err
	}
	sr.Connected = int(n) - len(observers)
	if n < want {
		res.Notes = append(res.Notes, f.connectError(n-int64(len(observers)), int64(len(subs))).Error())
	}
	last := time.Unix(0, st.lastConn.Load())
	sr.ConnectSpanSec = last.Sub(firstSend).Seconds()
	res.ConnectSec = sr.ConnectSpanSec
	b.logf("storm: %d of %d subscribers connected, the last %.2fs after the first open", sr.Connected, len(subs), sr.ConnectSpanSec)
	res.RSSConnectedKiB = sumRSS(e.serverPIDs)
	if len(subs) > 0 {
		res.RSSPerSubKiB = float64(res.RSSConnectedKiB-res.RSSBeforeKiB) / float64(len(subs))
	}
	if err := b.checkOnlineLists(ctx, st, observers, last, sr); err != nil {
		return lag, err
	}
	return lag, b.waitPresence(ctx, subs, last, sr)
}

// waitPresence waits, at most -online-timeout after last, until every
// connected subscriber has read its room's presence event (the start of
// its stream is complete), and records how long after last that was.
func (b *bench) waitPresence(ctx context.Context, subs []*subscriber, last time.Time, sr *stormResult) error {
	deadline := last.Add(b.cfg.onlineTimeout)
	for n := 0; n < maxWaitPolls; n++ {
		missing, latest := 0, int64(0)
		for _, s := range subs {
			// conned is its own goroutine's: count on liveAt alone.
			switch at := s.liveAt.Load(); {
			case at == 0:
				missing++
			default:
				latest = max(latest, at)
			}
		}
		if latest > 0 {
			sr.PresenceSec = max(time.Unix(0, latest).Sub(last).Seconds(), 0)
		}
		if missing <= len(subs)-sr.Connected || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(connPoll):
		}
	}
	return nil
}

// openOnSchedule starts subscriber j at first + j/len(subs) × span (open
// loop: a slow server makes opens pile up, as browsers' would).
func (f *fleet) openOnSchedule(ctx context.Context, subs []*subscriber, first time.Time, span time.Duration) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for j, sub := range subs {
		at := first.Add(time.Duration(float64(span) * float64(j) / float64(len(subs))))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		}
		if err := f.start(ctx, sub, nil); err != nil {
			return err
		}
	}
	return nil
}

// checkOnlineLists waits, at most -online-timeout after last (the last
// connect), until every room's online list is correct, as GET
// /r/{room}/online answers it (polled every onlinePoll) and as the room's
// observer sees it, and records in sr after how long.
func (b *bench) checkOnlineLists(ctx context.Context, st *runState, observers []*subscriber, last time.Time, sr *stormResult) error {
	rooms := len(observers)
	pollAt := make([]time.Duration, rooms) // < 0: not correct yet
	pollErr := make([]error, rooms)
	for r := range pollAt {
		pollAt[r] = -1
	}
	deadline := last.Add(b.cfg.onlineTimeout)
	eventsDone := func() bool {
		for _, o := range observers {
			if o.online.correctSince.Load() == 0 {
				return false
			}
		}
		return true
	}
	maxRounds := int(b.cfg.onlineTimeout/onlinePoll) + 2
	for round := 0; round < maxRounds; round++ {
		var pending []int
		for r, at := range pollAt {
			if at < 0 {
				pending = append(pending, r)
			}
		}
		if len(pending) == 0 && eventsDone() {
			break
		}
		next := time.Now().Add(onlinePoll)
		err := forEach(ctx, len(pending), onlineConc, func(i int) error {
			r := pending[i]
			o := observers[r]
			if pollErr[r] = b.getOnline(ctx, o.sess, st.roomName(r), o.online.want); pollErr[r] == nil {
				pollAt[r] = max(time.Since(last), 0)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
	for r, at := range pollAt {
		if at < 0 {
			sr.PollWrong++
			if sr.FirstWrong == "" && pollErr[r] != nil {
				sr.FirstWrong = "GET: " + pollErr[r].Error()
			}
			continue
		}
		sr.PollSec = max(sr.PollSec, at.Seconds())
	}
	for _, o := range observers {
		since := o.online.correctSince.Load()
		if since == 0 {
			sr.EventsWrong++
			continue
		}
		sr.EventsSec = max(sr.EventsSec, time.Unix(0, since).Sub(last).Seconds())
	}
	return nil
}

// getOnline fetches GET /r/{room}/online as sess and checks it against want.
func (b *bench) getOnline(ctx context.Context, sess session, room string, want map[string]bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sess.target+roomPath(room, "online"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	sess.addCookies(req)
	resp, err := b.poster.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOnlineBody))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %.200q", roomPath(room, "online"), resp.Status, body)
	}
	return checkOnline(body, room, want)
}

// finishStorm adds what the ended subscribers and observers recorded.
func finishStorm(sr *stormResult, subs, observers []*subscriber) {
	for _, s := range subs {
		if s.conned && s.liveAt.Load() == 0 {
			sr.NoPresence++
		}
	}
	for _, o := range observers {
		sr.BadEvents += o.online.bad
		sr.ObserverReconnects += o.reconn
		sr.ObserverDisconnects += o.discon
		if sr.FirstWrong == "" && o.online.correctSince.Load() == 0 {
			if err := nameDiff(o.online.room, o.online.have, o.online.want); err != nil {
				sr.FirstWrong = "observer: " + err.Error()
			}
		}
	}
}
