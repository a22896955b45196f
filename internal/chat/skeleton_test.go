package chat

import (
	"slices"
	"testing"
)

// TestSkeletons: the hostile test's look-alikes of "alice" share a skeleton
// with it (some only through the upper-case one), different names do not.
func TestSkeletons(t *testing.T) {
	alice := Skeletons("alice")
	shares := func(name string) bool {
		return slices.ContainsFunc(Skeletons(name), func(s string) bool { return slices.Contains(alice, s) })
	}
	for _, n := range []string{"aIice", "Ꭺlice", "ɑlice", "aǀice", "ꓮlice", "aliᴄe", "alꓲce", "alɩce", "ALICE", "Alice"} {
		if !shares(n) {
			t.Errorf("%q (%+q) shares no skeleton with alice: %q vs %q", n, n, Skeletons(n), alice)
		}
	}
	for _, n := range []string{"alicia", "malice", "ali", "al ice", "bob", "Aline"} {
		if shares(n) {
			t.Errorf("%q shares a skeleton with alice: %q vs %q", n, Skeletons(n), alice)
		}
	}
}
