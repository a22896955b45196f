package broker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// Page is one page of a room's kept history, read backwards.
type Page struct {
	Messages []chat.Message // oldest first
	// Oldest is the oldest entry the page covers (a message, or a malformed
	// entry skipped): the next page is the one before it. Zero when the page
	// covers nothing.
	Oldest chat.ID
	More   bool // the history holds entries older than Oldest
}

// Before returns up to n valid messages of room older than before (zero:
// the newest), oldest first, with one XREVRANGE of at most n+1 entries. With
// n 0 it only tells whether anything is older than before.
func (b *Broker) Before(ctx context.Context, room string, before chat.ID, n int64) (Page, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	end := "+"
	if !before.IsZero() {
		end = "(" + before.String()
	}
	var rng *redis.XMessageSliceCmd
	var edits *redis.IntCmd
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rng = p.XRevRangeN(ctx, historyKey(room), end, "-", max(n, 0)+1)
		edits = p.HLen(ctx, editsKey(room))
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("read older messages: %w: %w", ErrUnavailable, err)
	}
	xs := rng.Val()
	var p Page
	if int64(len(xs)) > n {
		p.More = true
		xs = xs[:n]
	}
	es := readEntries(xs)
	p.Messages = make([]chat.Message, 0, len(es))
	for i := len(es) - 1; i >= 0; i-- {
		m, err := es[i].decode(room)
		if err != nil {
			b.skipMalformed(room, "history", err)
			continue
		}
		p.Messages = append(p.Messages, m)
	}
	// Messages as they are now: moderation entries left out, edits applied.
	if p.Messages, err = b.applyEdits(ctx, room, p.Messages, edits.Val() > 0); err != nil {
		return Page{}, err
	}
	if len(es) > 0 {
		p.Oldest = es[len(es)-1].id
	} else if n > 0 {
		p.More = false // not even an entry that parses: nothing to page to
	}
	return p, nil
}

// NewerPage returns where the page of n messages following after starts:
// the "before" of the page that holds the n entries after after, or ok false
// when fewer than n+1 follow (the newest page is then the room's own page).
func (b *Broker) NewerPage(ctx context.Context, room string, after chat.ID, n int64) (before chat.ID, ok bool, err error) {
	es, err := b.readAfter(ctx, room, after, max(n, 1)+1)
	if err != nil {
		return chat.ID{}, false, err
	}
	if int64(len(es)) <= max(n, 1) {
		return chat.ID{}, false, nil
	}
	return es[len(es)-1].id, true, nil
}

// SearchLimits bound one search.
type SearchLimits struct {
	Hits    int           // stop after this many hits
	Scan    int64         // entries read at most (the kept history: HistoryLen)
	Timeout time.Duration // and at most this long
}

// SearchResult is what a search found, newest first.
type SearchResult struct {
	Hits     []chat.Message
	Scanned  int64
	Complete bool // the whole kept history was searched
}

// Search finds the messages of room whose text contains q, ignoring case,
// newest first, reading the history backwards in pages of replayPage within
// lim. A search cut short by a limit returns what it found with Complete
// false.
func (b *Broker) Search(ctx context.Context, room, q string, lim SearchLimits) (SearchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	needle := strings.ToLower(q)
	var res SearchResult
	var before chat.ID
	for {
		n := min(replayPage, lim.Scan-res.Scanned)
		if n <= 0 {
			return res, nil
		}
		p, err := b.Before(ctx, room, before, n)
		if err != nil {
			if ctx.Err() != nil && res.Scanned > 0 {
				return res, nil // out of time: what was found so far
			}
			return res, fmt.Errorf("search: %w", err)
		}
		res.Scanned += n
		for i := len(p.Messages) - 1; i >= 0; i-- {
			m := p.Messages[i]
			if strings.Contains(strings.ToLower(m.Text), needle) {
				res.Hits = append(res.Hits, m)
				if len(res.Hits) >= lim.Hits {
					res.Complete = !p.More && i == 0
					return res, nil
				}
			}
		}
		if !p.More {
			res.Complete = true
			return res, nil
		}
		if ctx.Err() != nil {
			return res, nil
		}
		before = p.Oldest
	}
}
