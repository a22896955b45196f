package chat

import (
	"slices"
	"strings"

	uts39 "github.com/mtibben/confusables"
)

// Skeletons returns the look-alike keys of a display name (as CleanName
// returns it): two names that share any key look the same and must not
// belong to two people.
//
// A key is a UTS #39 skeleton (Unicode's confusables data, through
// github.com/mtibben/confusables: NFD, map every character to its
// prototype, NFD). UTS #39 compares strings as they are written, but names
// here are case-insensitive ("alIce" with a capital I is the same person as
// "alice"), so a name also gets the skeletons of its lower-case and its
// upper-case forms: "alꓲce" (Lisu ꓲ looks like I) then meets "ALICE", and
// "Ꭺlice" (Cherokee Ꭺ looks like A) meets "ALICE" too, although neither has
// a lower-case form that the data maps to "alice". The keys are computed
// per character of the whole name, spaces included.
func Skeletons(display string) []string {
	keys := []string{
		uts39.Skeleton(display),
		uts39.Skeleton(strings.ToLower(display)),
		uts39.Skeleton(strings.ToUpper(display)),
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
