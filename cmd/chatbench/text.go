package main

import (
	"bytes"
	"strconv"
)

// extractText returns the raw (still JSON-escaped) value of the top-level
// "text" member of a chat message's JSON data, without decoding the JSON:
// the bench only ever sends texts that need no escaping. Members may come
// in any order, with any others around them (nested objects and arrays
// are skipped whole, so a "text" inside them, or a `"text":` inside a
// string, is not taken); the first "text" member counts. Keys are compared
// as written: encoding/json never escapes letters in them.
func extractText(data []byte) ([]byte, bool) {
	v, ok := jsonMember(data, "text")
	if !ok || len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// jsonMember returns the raw value of the first member named key of the
// JSON object obj. It checks only the structure it walks through, and
// allocates nothing.
func jsonMember(obj []byte, key string) ([]byte, bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil, false
	}
	for i < len(obj) && obj[i] == '"' {
		kEnd, ok := stringEnd(obj, i)
		if !ok {
			return nil, false
		}
		k := obj[i+1 : kEnd-1]
		i = skipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipSpace(obj, i+1)
		vEnd, ok := valueEnd(obj, i)
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return obj[i:vEnd], true
		}
		i = skipSpace(obj, vEnd)
		if i >= len(obj) || obj[i] != ',' {
			return nil, false // '}' (key not found) or malformed
		}
		i = skipSpace(obj, i+1)
	}
	return nil, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		q := j + k
		backslashes := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
}

// valueEnd returns the index just past the JSON value starting at b[i]:
// a string, an object or array (with everything nested in it), or a
// number or literal.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, ok := stringEnd(b, i)
				if !ok {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	}
	start := i
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' &&
		b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i, i > start
}

// benchPrefix starts every message text the bench posts:
// "bench <seq> <unixnano> <runtag>".
const benchPrefix = "bench "

// appendBenchText appends the text of message seq posted at unixNano.
func appendBenchText(b []byte, seq int, unixNano int64, tag string) []byte {
	b = append(b, benchPrefix...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(unixNano), 10)
	b = append(b, ' ')
	return append(b, tag...)
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
