package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxNameLen is the longest name, in characters, after normalisation.
const MaxNameLen = 32

// CleanName validates a user name and returns the name to display and the
// canonical key that identifies it.
//
// Each space-separated part of the name is enforced with the PRECIS
// UsernameCasePreserved profile (RFC 8265 §3.5 treats space-separated
// "userparts" this way), which rejects control, bidi-override, invisible and
// other disallowed characters and applies width mapping and NFC. The key uses
// UsernameCaseMapped (case folded) and then maps well-known look-alike letters
// (Cyrillic "а", Greek "ο", digit "0"…) to one skeleton, so "Alice", "ALICE"
// and "Аlice" with a Cyrillic А are the same name.
func CleanName(raw string) (display, key string, err error) {
	if !utf8.ValidString(raw) {
		return "", "", BadInput(400, "name is not valid UTF-8 text")
	}
	for _, r := range raw {
		if unicode.IsControl(r) || IsBidiControl(r) || unicode.Is(unicode.Cf, r) {
			return "", "", BadInput(400, "name contains an invisible or control character (U+%04X)", r)
		}
	}
	parts := strings.Fields(raw)
	if len(parts) == 0 {
		return "", "", BadInput(400, "name is empty: choose a name of 1 to %d characters", MaxNameLen)
	}
	shown := make([]string, len(parts))
	keys := make([]string, len(parts))
	for i, p := range parts {
		s, err := precis.UsernameCasePreserved.String(p)
		if err != nil {
			return "", "", BadInput(400, "name %q is not allowed: use letters, digits and simple punctuation", clip(raw, 40))
		}
		k, err := precis.UsernameCaseMapped.String(p)
		if err != nil {
			return "", "", BadInput(400, "name %q is not allowed: use letters, digits and simple punctuation", clip(raw, 40))
		}
		shown[i], keys[i] = s, skeleton(k)
	}
	display = strings.Join(shown, " ")
	if n := utf8.RuneCountInString(display); n > MaxNameLen {
		return "", "", BadInput(400, "name is too long: %d characters, the limit is %d", n, MaxNameLen)
	}
	return display, strings.Join(keys, " "), nil
}

// skeleton maps characters that look like a lower-case Latin letter to that
// letter, after case folding. It is a small, deliberate subset of Unicode's
// confusables (UTS #39) covering the scripts most used for impersonation.
func skeleton(s string) string {
	return strings.Map(func(r rune) rune {
		if m, ok := confusables[r]; ok {
			return m
		}
		return r
	}, s)
}

var confusables = map[rune]rune{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'һ': 'h', 'і': 'i', 'ї': 'i', 'ј': 'j', 'к': 'k',
	'ӏ': 'l', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'ѕ': 's', 'т': 't', 'у': 'y',
	'х': 'x', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ү': 'y', 'ɡ': 'g',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p',
	'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y', 'ϲ': 'c',
	'ς': 'σ', // final sigma: lower-casing "Σ" gives "σ", so "ΟΔΥΣΣΕΥΣ" must match "οδυσσευς"
	// Latin look-alikes and digits
	'ı': 'i', 'ł': 'l', '0': 'o', '1': 'l', '|': 'l', 'ℓ': 'l',
}
