package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Sizes of a Reader made by NewReader.
const (
	DefaultBufferSize = 4096
	DefaultMaxLine    = 1 << 20
)

const (
	minBufferSize = 16  // room for a BOM and then some
	maxEmptyReads = 100 // a source returning (0, nil) this often in a row is broken
)

var (
	// ErrLineTooLong is returned by Next for a line longer than the
	// Reader's maximum.
	ErrLineTooLong = errors.New("sse: line too long")
	// ErrEventTooLarge is returned by Next when the data lines of one
	// event add up to more than the Reader's maximum line length.
	ErrEventTooLarge = errors.New("sse: event data too large")

	errBadRead = errors.New("sse: source returned an invalid count")
)

// Kind says what an Item is.
type Kind uint8

const (
	// KindEvent is a dispatched event: Type, Data and ID are set.
	KindEvent Kind = iota + 1
	// KindComment is a comment line (": text"): Text is set.
	KindComment
	// KindRetry is a valid "retry:" line: Retry is set.
	KindRetry
)

func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindComment:
		return "comment"
	case KindRetry:
		return "retry"
	}
	return "invalid"
}

// Item is one thing Reader.Next found. Its slices point into the Reader's
// buffers and are valid until the next call of a Reader method.
type Item struct {
	Kind Kind
	// Type is the event type: the last "event:" value of the event, or
	// "message" if it had none.
	Type []byte
	// Data is the event's data lines joined with LF.
	Data []byte
	// ID is the last event ID when the event was dispatched: set by this
	// event's "id:" line or an earlier one; empty if none has been seen.
	ID []byte
	// Text is a comment's text: the line after ':', one leading space
	// removed.
	Text []byte
	// Retry is the reconnection time a "retry:" line set (its value is in
	// milliseconds; an absurdly large one saturates).
	Retry time.Duration
}

// Event is a dispatched event as strings, as an EventSource listener
// receives it.
type Event struct {
	Type string // "message" unless the stream named another
	Data string
	ID   string // the last event ID as of this event
}

// Event copies an event Item into strings.
func (it Item) Event() Event {
	return Event{Type: string(it.Type), Data: string(it.Data), ID: string(it.ID)}
}

// Reader parses an event stream as the WHATWG "event stream
// interpretation" does:
//   - a UTF-8 byte order mark at the very start is skipped; invalid UTF-8
//     reads as U+FFFD (one per maximal ill-formed subsequence);
//   - lines end at CRLF, LF or CR (a CR at the end of one Read and an LF at
//     the start of the next are one line end; Reader never waits for the
//     byte after a CR);
//   - a blank line dispatches the event; an event whose data buffer is
//     empty (no "data" field) is not dispatched, but its type is cleared
//     and its ID, if any, still becomes the last event ID;
//   - "field: value" has one space after the colon removed; a line without
//     a colon is a field with an empty value; "event" sets the type, "data"
//     appends the value and LF (the final LF is removed at dispatch), "id"
//     sets the last event ID unless the value contains NUL, "retry" is
//     used only if the value is ASCII digits (one or more); other fields
//     are ignored;
//   - at the end of the stream an unfinished event is discarded.
//
// The last event ID persists from event to event, and across Reset, as an
// EventSource keeps it across reconnections.
//
// Memory is bounded: a line longer than the maximum is ErrLineTooLong, an
// event whose data exceeds it is ErrEventTooLarge, so a Reader holds at
// most its buffer plus a few times the maximum line. Once its buffers have
// grown it allocates nothing per event. Errors are final: after one, Next
// returns it again.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	src  io.Reader
	max  int
	buf  []byte
	r, w int   // buf[r:w] is read but not parsed
	rerr error // error of the last Read, reported once buf[r:w] holds no whole line
	err  error // what Next returns from now on

	lf      int // index in buf of the next LF at or after r; below r: unknown
	scanned int // buf[r:scanned] holds no LF (when scanned > r)

	bom    bool // at the start of a stream: a BOM may come
	skipLF bool // the last line ended in a CR that was the last byte read

	long    []byte // a line that did not fit in buf, assembled
	data    []byte // data buffer: every data value followed by LF
	typ     []byte // event type buffer
	idBuf   []byte // last event ID buffer
	lastID  []byte // last event ID as of the last dispatch
	scratch []byte // a value with invalid UTF-8 replaced
	retry   time.Duration
}

// NewReader returns a Reader of r with a DefaultBufferSize buffer and lines
// of at most DefaultMaxLine bytes.
func NewReader(r io.Reader) *Reader {
	return NewReaderSize(r, DefaultBufferSize, DefaultMaxLine)
}

// NewReaderSize returns a Reader of r that reads through a buffer of
// bufSize bytes (at least 16) and allows lines, and the data of one event,
// of at most maxLine bytes (DefaultMaxLine if maxLine <= 0). Lines longer
// than the buffer cost a copy, so bufSize should exceed typical events.
func NewReaderSize(r io.Reader, bufSize, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Reader{src: r, max: maxLine, buf: make([]byte, max(bufSize, minBufferSize)), lf: -1, bom: true}
}

// Reset makes p read a new stream from r, as if newly made, except that it
// keeps its buffers, the last event ID and the reconnection time.
func (p *Reader) Reset(r io.Reader) {
	p.src = r
	p.r, p.w = 0, 0
	p.rerr, p.err = nil, nil
	p.lf, p.scanned = -1, 0
	p.bom, p.skipLF = true, false
	p.data = p.data[:0]
	p.typ = p.typ[:0]
	p.idBuf = append(p.idBuf[:0], p.lastID...)
}

// LastEventID is the last event ID as of the last dispatch (what an
// EventSource sends as Last-Event-ID when it reconnects).
func (p *Reader) LastEventID() []byte { return p.lastID }

// Retry is the reconnection time set by the last valid "retry:" line, 0 if
// none.
func (p *Reader) Retry() time.Duration { return p.retry }

// Next returns the next event, comment or retry line. At the end of the
// stream it returns io.EOF (an unfinished event is discarded); a read
// error is returned as it is.
func (p *Reader) Next() (Item, error) {
	if p.err != nil {
		return Item{}, p.err
	}
	for {
		line, err := p.readLine()
		if err != nil {
			p.err = err
			p.data, p.typ = p.data[:0], p.typ[:0]
			return Item{}, err
		}
		if len(line) == 0 { // dispatch
			p.lastID = append(p.lastID[:0], p.idBuf...)
			if len(p.data) == 0 {
				p.typ = p.typ[:0]
				continue
			}
			if len(p.typ) == 0 {
				p.typ = append(p.typ, "message"...)
			}
			it := Item{Kind: KindEvent, Type: p.typ, Data: p.data[:len(p.data)-1], ID: p.lastID}
			p.data, p.typ = p.data[:0], p.typ[:0] // the Item keeps the bytes until the next call
			return it, nil
		}
		if line[0] == ':' {
			return Item{Kind: KindComment, Text: p.valid(trimSpace(line[1:]))}, nil
		}
		field, value := line, line[len(line):]
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], trimSpace(line[i+1:])
		}
		switch string(field) { // no allocation: the compiler compares in place
		case "data":
			value = p.valid(value)
			if len(p.data)+len(value)+1 > p.max {
				p.err = ErrEventTooLarge
				return Item{}, p.err
			}
			p.data = append(p.data, value...)
			p.data = append(p.data, '\n')
		case "event":
			p.typ = append(p.typ[:0], p.valid(value)...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.idBuf = append(p.idBuf[:0], p.valid(value)...)
			}
		case "retry":
			if d, ok := parseRetry(value); ok {
				p.retry = d
				return Item{Kind: KindRetry, Retry: d}, nil
			}
		}
	}
}

// NextEvent returns the next dispatched event as strings, skipping
// comments and retry lines.
func (p *Reader) NextEvent() (Event, error) {
	for {
		it, err := p.Next()
		if err != nil {
			return Event{}, err
		}
		if it.Kind == KindEvent {
			return it.Event(), nil
		}
	}
}

// trimSpace removes one leading space.
func trimSpace(v []byte) []byte {
	if len(v) > 0 && v[0] == ' ' {
		return v[1:]
	}
	return v
}

// valid returns v with invalid UTF-8 replaced (in p.scratch when needed).
func (p *Reader) valid(v []byte) []byte {
	if utf8.Valid(v) {
		return v
	}
	p.scratch = appendReplacingInvalid(p.scratch[:0], v)
	return p.scratch
}

// parseRetry parses a retry value: ASCII digits only, milliseconds.
func parseRetry(v []byte) (time.Duration, bool) {
	const limit = math.MaxInt64 / int64(time.Millisecond)
	if len(v) == 0 {
		return 0, false
	}
	var ms int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ms <= limit {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > limit {
		return math.MaxInt64, true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// readLine returns the next line without its line end, valid until the
// next call. At the end of the input an unterminated line is dropped and
// the read error returned.
func (p *Reader) readLine() ([]byte, error) {
	p.long = p.long[:0]
	for {
		if p.bom {
			avail := p.buf[p.r:p.w]
			if len(avail) < len(bom) && bytes.HasPrefix(bom, avail) && p.rerr == nil {
				p.fill() // not sure yet
				continue
			}
			if bytes.HasPrefix(avail, bom) {
				p.r += len(bom)
			}
			p.bom = false
		}
		if p.skipLF && p.r < p.w {
			p.skipLF = false
			if p.buf[p.r] == '\n' {
				p.r++
			}
		}
		if i := p.eol(); i >= 0 {
			line, end := p.buf[p.r:p.r+i], p.buf[p.r+i]
			p.r += i + 1
			if end == '\r' {
				if p.r < p.w {
					if p.buf[p.r] == '\n' {
						p.r++
					}
				} else {
					p.skipLF = true
				}
			}
			if len(p.long) > 0 {
				if len(p.long)+len(line) > p.max {
					return nil, ErrLineTooLong
				}
				line = append(p.long, line...)
				p.long = line
			}
			if len(line) > p.max {
				return nil, ErrLineTooLong
			}
			return line, nil
		}
		if len(p.long)+p.w-p.r > p.max {
			return nil, ErrLineTooLong
		}
		if p.rerr != nil {
			return nil, p.rerr
		}
		p.fill()
	}
}

var bom = []byte("\xEF\xBB\xBF")

// eol returns the index in buf[r:w] of the first CR or LF, or -1.
func (p *Reader) eol() int {
	if p.lf < p.r { // find the next LF, scanning each byte once
		from := max(p.r, p.scanned)
		if i := bytes.IndexByte(p.buf[from:p.w], '\n'); i >= 0 {
			p.lf = from + i
		} else {
			p.scanned = p.w
		}
	}
	end := p.w
	if p.lf >= p.r {
		end = p.lf
	}
	if i := bytes.IndexByte(p.buf[p.r:end], '\r'); i >= 0 {
		return i
	}
	if p.lf >= p.r {
		return p.lf - p.r
	}
	return -1
}

// fill reads once into the buffer, first moving the unparsed bytes to its
// start, or into long when they fill it.
func (p *Reader) fill() {
	if p.r > 0 {
		copy(p.buf, p.buf[p.r:p.w])
		p.w -= p.r
		p.scanned = max(p.scanned-p.r, 0)
		p.lf = -1
		p.r = 0
	}
	if p.w == len(p.buf) { // a line longer than the buffer
		p.long = append(p.long, p.buf...)
		p.w, p.scanned, p.lf = 0, 0, -1
	}
	for range maxEmptyReads {
		n, err := p.src.Read(p.buf[p.w:])
		if n < 0 || n > len(p.buf)-p.w {
			p.rerr = errBadRead
			return
		}
		p.w += n
		if err != nil {
			p.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	p.rerr = io.ErrNoProgress
}
