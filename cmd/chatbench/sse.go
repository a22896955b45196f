package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxSSELine bounds one SSE line (a hostile or broken server must not make
// the generator grow a buffer without limit).
const maxSSELine = 1 << 20

// sseKind says what sseReader.Next found.
type sseKind int

const (
	// sseRetry: a "retry:" line with a valid number was read. The server
	// sends one first on every stream, so it marks "connected".
	sseRetry sseKind = iota + 1
	// sseEvent: a complete event (closing blank line seen, some data).
	sseEvent
)

var errLineTooLong = errors.New("sse: line too long")

// sseReader is a lean server-sent-events parser: it allocates nothing per
// event once its buffers have grown, and keeps only what the bench needs
// (event type, data, last event ID). Lines may end in LF or CRLF; a lone CR
// as line terminator (allowed by the spec, never sent by Go servers) is not
// supported. An event without its closing blank line is discarded, as in
// browsers.
//
// The slices returned by Event, Data and LastID are valid until the next
// call of Next.
type sseReader struct {
	br      *bufio.Reader
	long    []byte // holds a line longer than br's buffer
	event   []byte
	data    []byte
	lastID  []byte
	hasData bool
	reset   bool // clear event and data before reading the next event

	Comments int // comment lines seen (": ping" heartbeats)
}

// newSSEReader returns a parser reading r through a buffer of size bytes.
func newSSEReader(r io.Reader, size int) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, size)}
}

// Reset makes the parser read a new stream, keeping its buffers and the
// last event ID (as an EventSource does across reconnects).
func (p *sseReader) Reset(r io.Reader) {
	p.br.Reset(r)
	p.event = p.event[:0]
	p.data = p.data[:0]
	p.hasData = false
	p.reset = false
}

// Event is the type of the last event ("message" when none was given).
func (p *sseReader) Event() []byte {
	if len(p.event) == 0 {
		return []byte("message")
	}
	return p.event
}

// Data is the data of the last event, its lines joined by "\n".
func (p *sseReader) Data() []byte { return p.data }

// LastID is the last event ID buffer (the ID of the last event that set one).
func (p *sseReader) LastID() []byte { return p.lastID }

// readLine returns the next line without its terminator. An unterminated
// final line is dropped (io.EOF or the read error is returned).
func (p *sseReader) readLine() ([]byte, error) {
	line, err := p.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.long = append(p.long[:0], line...)
		for err == bufio.ErrBufferFull && len(p.long) <= maxSSELine {
			line, err = p.br.ReadSlice('\n')
			p.long = append(p.long, line...)
		}
		if len(p.long) > maxSSELine {
			return nil, errLineTooLong
		}
		line = p.long
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// Next reads until a retry line or a complete event.
func (p *sseReader) Next() (sseKind, error) {
	if p.reset {
		p.event = p.event[:0]
		p.data = p.data[:0]
		p.hasData = false
		p.reset = false
	}
	for {
		line, err := p.readLine()
		if err != nil {
			return 0, err
		}
		if len(line) == 0 {
			if !p.hasData {
				// Spec: an event with no data is not dispatched.
				p.event = p.event[:0]
				continue
			}
			p.reset = true
			return sseEvent, nil
		}
		if line[0] == ':' {
			p.Comments++
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) { // no allocation: compiler optimizes string(b) in switch
		case "data":
			if p.hasData {
				p.data = append(p.data, '\n')
			}
			p.data = append(p.data, value...)
			p.hasData = true
		case "event":
			p.event = append(p.event[:0], value...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID = append(p.lastID[:0], value...)
			}
		case "retry":
			if isDigits(value) {
				return sseRetry, nil
			}
		}
	}
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

var textKey = []byte(`"text":`)

// extractText returns the raw (still JSON-escaped) value of the "text"
// field of a chat message's JSON data, without decoding the JSON: the bench
// only ever sends texts that need no escaping. User names are letters and
// digits, so the key cannot appear inside another field's value unescaped.
func extractText(data []byte) ([]byte, bool) {
	i := bytes.Index(data, textKey)
	if i < 0 {
		return nil, false
	}
	j := i + len(textKey)
	for j < len(data) && (data[j] == ' ' || data[j] == '\t') {
		j++
	}
	if j >= len(data) || data[j] != '"' {
		return nil, false
	}
	j++
	start := j
	for j < len(data) {
		switch data[j] {
		case '\\':
			j += 2
			continue
		case '"':
			return data[start:j], true
		}
		j++
	}
	return nil, false
}

// benchPrefix starts every message text the bench posts:
// "bench <seq> <unixnano> <runtag>".
const benchPrefix = "bench "

// appendBenchText appends the text of message seq posted at unixNano.
func appendBenchText(b []byte, seq int, unixNano int64, tag string) []byte {
	b = append(b, benchPrefix...)
	b = appendUint(b, uint64(seq))
	b = append(b, ' ')
	b = appendUint(b, uint64(unixNano))
	b = append(b, ' ')
	return append(b, tag...)
}

func appendUint(b []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// parseBenchText parses a text made by appendBenchText.
func parseBenchText(b []byte) (seq uint64, unixNano int64, tag []byte, ok bool) {
	if !bytes.HasPrefix(b, []byte(benchPrefix)) {
		return 0, 0, nil, false
	}
	b = b[len(benchPrefix):]
	seq, b, ok = parseUintPrefix(b)
	if !ok || len(b) == 0 || b[0] != ' ' {
		return 0, 0, nil, false
	}
	ns, b, ok := parseUintPrefix(b[1:])
	if !ok || len(b) == 0 || b[0] != ' ' || ns > 1<<62 {
		return 0, 0, nil, false
	}
	return seq, int64(ns), b[1:], true
}

// parseUintPrefix parses leading decimal digits (at most 19).
func parseUintPrefix(b []byte) (uint64, []byte, bool) {
	var v uint64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i == 19 {
			return 0, nil, false
		}
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}

// idSeqBits is how many low bits of a packed stream ID hold the sequence
// part: Redis numbers entries within one millisecond from 0, far below 4M
// at any rate this bench can offer.
const idSeqBits = 22

// parseStreamID packs a Redis stream ID "<ms>-<seq>" into one comparable
// uint64 (ms in the high bits). ok is false for any other format or for a
// zero ID, so the caller can skip ID checks for servers with other IDs.
func parseStreamID(b []byte) (uint64, bool) {
	ms, rest, ok := parseUintPrefix(b)
	if !ok || len(rest) < 2 || rest[0] != '-' || ms >= 1<<(64-idSeqBits) {
		return 0, false
	}
	seq, rest, ok := parseUintPrefix(rest[1:])
	if !ok || len(rest) != 0 || seq >= 1<<idSeqBits {
		return 0, false
	}
	id := ms<<idSeqBits | seq
	return id, id != 0
}
