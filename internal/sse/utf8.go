package sse

import "unicode/utf8"

// appendReplacingInvalid appends s to dst with every ill-formed UTF-8
// sequence replaced by U+FFFD, one per maximal subpart, as the WHATWG
// "UTF-8 decode" algorithm does (and unlike bytes.ToValidUTF8, which
// replaces whole runs, or utf8.DecodeRune, which steps one byte).
func appendReplacingInvalid(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if r, n := utf8.DecodeRune(s[i:]); r != utf8.RuneError || n > 1 {
			dst = append(dst, s[i:i+n]...)
			i += n
			continue
		}
		dst = append(dst, "\uFFFD"...)
		i += maximalSubpart(s[i:])
	}
	return dst
}

// maximalSubpart is the length of the ill-formed sequence at the start of
// s that one U+FFFD replaces: the longest prefix that could still begin a
// well-formed sequence, and at least one byte. s must not start with a
// well-formed sequence.
func maximalSubpart(s []byte) int {
	var need int
	lo, hi := byte(0x80), byte(0xBF) // the range of the next byte
	switch c := s[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c >= 0xE0 && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0 // no overlong forms
		} else if c == 0xED {
			hi = 0x9F // no surrogates
		}
	case c >= 0xF0 && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F // nothing above U+10FFFF
		}
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(s) && s[n] >= lo && s[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
