package sse

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
)

// item is an Item as plain values, for comparisons.
type item struct {
	Kind  Kind
	Type  string
	Data  string
	ID    string
	Text  string
	Retry time.Duration
}

func ev(typ, data, id string) item { return item{Kind: KindEvent, Type: typ, Data: data, ID: id} }
func comment(text string) item     { return item{Kind: KindComment, Text: text} }
func retry(d time.Duration) item   { return item{Kind: KindRetry, Retry: d} }

func toItem(it Item) item {
	return item{it.Kind, string(it.Type), string(it.Data), string(it.ID), string(it.Text), it.Retry}
}

// refParse is the WHATWG event stream interpretation transcribed step by
// step, on the whole stream at once and with no regard for speed: the
// reference the streaming Reader is compared with. It returns what Reader
// would report, and the last event ID at the end.
func refParse(stream []byte) (items []item, lastID string) {
	text := refUTF8Decode(stream)
	var data, eventType, idBuf strings.Builder
	for {
		// Lines end at CRLF, LF or CR; a final unterminated line is
		// pending data, discarded at the end of the stream.
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			return items, lastID
		}
		line := text[:i]
		if strings.HasPrefix(text[i:], "\r\n") {
			text = text[i+2:]
		} else {
			text = text[i+1:]
		}

		if line == "" { // dispatch the event
			lastID = idBuf.String()
			if data.Len() == 0 {
				data.Reset()
				eventType.Reset()
				continue
			}
			d := strings.TrimSuffix(data.String(), "\n")
			typ := "message"
			if eventType.Len() > 0 {
				typ = eventType.String()
			}
			items = append(items, ev(typ, d, lastID))
			data.Reset()
			eventType.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			items = append(items, comment(strings.TrimPrefix(line[1:], " ")))
			continue
		}
		field, value := line, ""
		if j := strings.Index(line, ":"); j >= 0 {
			field = line[:j]
			value = strings.TrimPrefix(line[j+1:], " ")
		}
		switch field {
		case "event":
			eventType.Reset()
			eventType.WriteString(value)
		case "data":
			data.WriteString(value)
			data.WriteString("\n")
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf.Reset()
				idBuf.WriteString(value)
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				items = append(items, retry(refRetry(value)))
			}
		}
	}
}

// refRetry converts a retry value, saturating as Reader documents.
func refRetry(v string) time.Duration {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// refUTF8Decode is the WHATWG Encoding standard's "UTF-8 decode": strip
// one leading BOM, then run the UTF-8 decoder, whose error handling is
// "replacement". Transcribed from the standard's state machine.
func refUTF8Decode(b []byte) string {
	if bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}) {
		b = b[3:]
	}
	return refUTF8Decoder(b)
}

func refUTF8Decoder(in []byte) string {
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(in); i++ {
		c := in[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune('\uFFFD')
			}
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen = 0, 0, 0
			lower, upper = 0x80, 0xBF
			i-- // "restore byte to ioQueue"
			out.WriteRune('\uFFFD')
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		seen++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune('\uFFFD')
	}
	return out.String()
}
