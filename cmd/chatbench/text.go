package main

import (
	"bytes"
	"strconv"
)

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
