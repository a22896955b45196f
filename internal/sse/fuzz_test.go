package sse

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// FuzzRoundTrip: AppendEvent refuses exactly the IDs, names and data it
// documents, and whatever it accepts a Reader reads back as the same
// event (line breaks as LF), with nothing leaking into the events around
// it.
func FuzzRoundTrip(f *testing.F) {
	f.Add("1732650000000-0", "message", []byte(`{"id":"1-0","text":"hi"}`), false)
	f.Add("", "", []byte(""), true)
	f.Add("", "status", []byte("a\r\nb\rc\n"), false)
	f.Add("x\ny", "m", []byte("d"), false)
	f.Add("1", "e\r", []byte("d"), true)
	f.Add("1\x00", "m", []byte("d"), false)
	f.Add(" sp", " sp", []byte(" sp\n\ndata: injected\nid: 9"), true)
	f.Add("1", "m", []byte("bad \xff utf-8"), false)
	f.Fuzz(func(t *testing.T, id, name string, data []byte, bytewise bool) {
		before, err := AppendEvent(nil, "p", "before", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		wire, err := AppendEvent(before, id, name, data)
		refuse := !fieldOK(id) || !fieldOK(name) || !utf8.Valid(data)
		if err != nil {
			if !refuse || !errors.Is(err, ErrInvalidField) {
				t.Fatalf("AppendEvent(%q, %q, %q): %v", id, name, data, err)
			}
			if string(wire) != string(before) {
				t.Fatalf("refused, but dst changed to %q", wire)
			}
			return
		}
		if refuse {
			t.Fatalf("AppendEvent(%q, %q, %q) accepted: %q", id, name, data, wire)
		}
		wire, _ = AppendEvent(wire, "", "", []byte("after"))

		var src io.Reader = bytes.NewReader(wire)
		if bytewise {
			src = iotest.OneByteReader(src)
		}
		got, last, err := readAll(t, src, 16, 0)
		typ := name
		if typ == "" {
			typ = "message"
		}
		if id == "" {
			id = "p" // no id line: the last event ID stays
		}
		want := []item{ev("before", "x", "p"), ev(typ, normalizeBreaks(string(data)), id), ev("message", "after", id)}
		if !errors.Is(err, io.EOF) || !reflect.DeepEqual(got, want) || last != id {
			t.Fatalf("wire %q parsed as %+v (last ID %q, %v), want %+v", wire, got, last, err, want)
		}
	})
}

func fieldOK(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00") && utf8.ValidString(s)
}

func normalizeBreaks(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// FuzzReader: on any input, in any pieces, Reader never panics, reads
// exactly what the reference transcription of the standard reads, and
// keeps to its bound: with a small maximum it stops with a limit error
// (after a prefix of the same items) instead of holding more.
func FuzzReader(f *testing.F) {
	for _, c := range specCases {
		f.Add([]byte(c.in), uint8(1), uint16(8))
	}
	f.Add(chatStream(3), uint8(0), uint16(100))
	f.Add([]byte("data: "+strings.Repeat("x", 300)+"\r\n\r\n"), uint8(5), uint16(64))
	f.Add([]byte(strings.Repeat("data:a\n", 20)+"\n"), uint8(3), uint16(40)) // short lines, long event
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8, maxLine uint16) {
		want, wantLast := refParse(stream)
		pieces := func() io.Reader { return &chunkReader{s: string(stream), n: int(chunk%32) + 1} }

		// Unlimited (beyond the input): exactly the reference.
		got, last, err := readAll(t, pieces(), 16, 3*len(stream)+16)
		if !errors.Is(err, io.EOF) || !reflect.DeepEqual(got, want) || last != wantLast {
			t.Fatalf("stream %q:\n got %+v, last %q, %v\nwant %+v, last %q", stream, got, last, err, want, wantLast)
		}

		// Limited: a prefix of the same items, nothing longer than the
		// limit allows, and buffers that stay within a multiple of it.
		max := int(maxLine)%512 + 1
		const bufSize = 32
		p := NewReaderSize(pieces(), bufSize, max)
		var items []item
		for {
			it, err := p.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrLineTooLong) && !errors.Is(err, ErrEventTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				if errors.Is(err, io.EOF) && len(items) != len(want) {
					t.Fatalf("EOF after %d items, want %d", len(items), len(want))
				}
				if errors.Is(err, ErrLineTooLong) && !hasLongLine(stream, max) {
					t.Fatalf("ErrLineTooLong, but no line is longer than %d", max)
				}
				break
			}
			if len(items) >= len(want) || !reflect.DeepEqual(toItem(it), want[len(items)]) {
				t.Fatalf("item %d = %+v, want %+v", len(items), toItem(it), want)
			}
			if len(it.Data) > max || len(it.Type) > 3*max || len(it.ID) > 3*max || len(it.Text) > 3*max {
				t.Fatalf("item longer than the limit %d allows: %+v", max, toItem(it))
			}
			items = append(items, toItem(it))
		}
		held := cap(p.buf) + cap(p.long) + cap(p.data) + cap(p.typ) + cap(p.idBuf) + cap(p.lastID) + cap(p.scratch)
		if limit := bufSize + 32*max + 256; held > limit {
			t.Fatalf("Reader holds %d bytes with a limit of %d, want at most %d", held, max, limit)
		}
	})
}

// hasLongLine reports whether stream, after a BOM, has a line (terminated
// or not) of more than max bytes.
func hasLongLine(stream []byte, max int) bool {
	stream = bytes.TrimPrefix(stream, []byte("\xEF\xBB\xBF"))
	for _, l := range strings.FieldsFunc(string(stream), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if len(l) > max {
			return true
		}
	}
	return false
}
