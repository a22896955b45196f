package chat

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCleanNameAccepts lists names that are allowed, with the name shown to
// others and the canonical key that decides whether two names are the same.
func TestCleanNameAccepts(t *testing.T) {
	tests := []struct {
		name, raw, display, key string
	}{
		{"plain", "alice", "alice", "alice"},
		{"capitalised", "Alice", "Alice", "alice"},
		{"upper case", "ALICE", "ALICE", "alice"},
		{"Cyrillic а looks like Latin a", "аlice", "аlice", "alice"},
		{"Cyrillic upper А", "Аlice", "Аlice", "alice"},
		{"fullwidth letters are narrowed", "Ａｌｉｃｅ", "Alice", "alice"},
		{"Greek omicron looks like o", "bοb", "bοb", "bob"},
		{"digit one looks like l", "a1ice", "a1ice", "alice"},
		{"surrounding spaces trimmed", "  alice  ", "alice", "alice"},
		{"parts separated by one space", "alice smith", "alice smith", "alice smith"},
		{"runs of spaces collapsed", "alice    smith", "alice smith", "alice smith"},
		{"no-break space is a space", "alice\u00a0smith", "alice smith", "alice smith"},
		{"ideographic space is a space", "alice\u3000smith", "alice smith", "alice smith"},
		{"simple punctuation", "o'neil_x-y.z", "o'neil_x-y.z", "o'neil_x-y.z"},
		{"accents kept", "Zoë", "Zoë", "zoë"},
		{"decomposed accent composed (NFC)", "Zoe\u0308", "Zoë", "zoë"},
		{"Greek final sigma equals sigma", "ΟΔΥΣΣΕΥΣ", "ΟΔΥΣΣΕΥΣ", skeleton("οδυσσευσ")},
		{"Greek lower case with final sigma", "οδυσσευς", "οδυσσευς", skeleton("οδυσσευσ")},
		{"halfwidth katakana widened", "ｶ", "カ", "カ"},
		{"exactly 32 characters", strings.Repeat("a", 32), strings.Repeat("a", 32), strings.Repeat("a", 32)},
		{"32 characters counted after collapsing spaces", strings.Repeat("a", 16) + "     " + strings.Repeat("b", 15),
			strings.Repeat("a", 16) + " " + strings.Repeat("b", 15), strings.Repeat("a", 16) + " " + strings.Repeat("b", 15)},
		{"32 multi-byte characters", strings.Repeat("é", 32), strings.Repeat("é", 32), strings.Repeat("é", 32)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			display, key, err := CleanName(tc.raw)
			if err != nil {
				t.Fatalf("CleanName(%q): %v", tc.raw, err)
			}
			if display != tc.display || key != tc.key {
				t.Fatalf("CleanName(%q) = %q, %q; want %q, %q", tc.raw, display, key, tc.display, tc.key)
			}
		})
	}
}

// TestCleanNameSameKey checks that names differing only by case, width or
// look-alike letters count as one name, and different names do not.
func TestCleanNameSameKey(t *testing.T) {
	same := [][]string{
		{"Alice", "ALICE", "alice", "аlice", "Ａｌｉｃｅ", "aLiCe", "АLICE", "a1ice"},
		{"bob smith", "Bob   Smith", "BOB\u00a0SMITH", "bοb smith"},
		{"ΟΔΥΣΣΕΥΣ", "οδυσσευς", "Οδυσσευς"},
	}
	for _, group := range same {
		_, want, err := CleanName(group[0])
		if err != nil {
			t.Fatalf("CleanName(%q): %v", group[0], err)
		}
		for _, n := range group[1:] {
			_, got, err := CleanName(n)
			if err != nil {
				t.Fatalf("CleanName(%q): %v", n, err)
			}
			if got != want {
				t.Errorf("CleanName(%q) key %q, want %q (same name as %q)", n, got, want, group[0])
			}
		}
	}
	different := [][2]string{{"alice", "alicia"}, {"alice smith", "alicesmith"}, {"bob", "bobby"}}
	for _, pair := range different {
		_, k1, _ := CleanName(pair[0])
		_, k2, _ := CleanName(pair[1])
		if k1 == k2 {
			t.Errorf("%q and %q share the key %q", pair[0], pair[1], k1)
		}
	}
}

// TestCleanNameRejects lists names that are refused, each with a part of the
// message the user reads and the 400 status.
func TestCleanNameRejects(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"empty", "", "name is empty"},
		{"only spaces", "   \u00a0 ", "name is empty"},
		{"invalid UTF-8", "al\xffice", "not valid UTF-8"},
		{"truncated UTF-8 sequence", "alice\xc3", "not valid UTF-8"},
		{"NUL", "al\x00ice", "U+0000"},
		{"escape sequence", "\x1b[31malice", "U+001B"},
		{"line feed", "al\nice", "U+000A"},
		{"carriage return", "alice\r", "U+000D"},
		{"tab", "al\tice", "U+0009"},
		{"DEL", "alice\x7f", "U+007F"},
		{"C1 control", "alice\u0085x", "U+0085"},
		{"right-to-left override", "\u202Eecila", "U+202E"},
		{"left-to-right embedding", "a\u202Ab", "U+202A"},
		{"right-to-left isolate", "a\u2067b", "U+2067"},
		{"zero-width space", "al\u200Bice", "U+200B"},
		{"zero-width joiner", "al\u200Dice", "U+200D"},
		{"zero-width non-joiner", "al\u200Cice", "U+200C"},
		{"byte order mark", "\uFEFFalice", "U+FEFF"},
		{"soft hyphen", "al\u00ADice", "U+00AD"},
		{"word joiner", "al\u2060ice", "U+2060"},
		{"Arabic letter mark", "al\u061Cice", "U+061C"},
		{"tag character", "alice\U000E0041", "U+E0041"},
		{"Hangul filler (blank letter)", "al\u3164ice", "not allowed"},
		{"combining grapheme joiner", "al\u034Fice", "not allowed"},
		{"variation selector", "al\uFE0Fice", "not allowed"},
		{"braille blank", "\u2800", "not allowed"},
		{"leading combining mark", "\u0301alice", "not allowed"},
		{"emoji", "alice😀", "not allowed"},
		{"long refused name quoted cut mid-character", "a" + strings.Repeat("é", 30) + "😀", "not allowed"},
		{"compatibility ligature", "ﬁsh", "not allowed"},
		{"33 characters", strings.Repeat("a", 33), "too long: 33 characters, the limit is 32"},
		{"33 multi-byte characters", strings.Repeat("é", 33), "the limit is 32"},
		{"long with spaces", strings.Repeat("ab ", 11) + "c", "the limit is 32"},
		{"huge", strings.Repeat("x", 100000), "the limit is 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			display, key, err := CleanName(tc.raw)
			if err == nil {
				t.Fatalf("CleanName(%q) = %q, %q; want an error", tc.raw, display, key)
			}
			status, msg := inputStatus(t, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not contain %q", msg, tc.want)
			}
			if !utf8.ValidString(msg) || len(msg) > 200 {
				t.Errorf("message is not short valid text: %q", msg)
			}
		})
	}
}
