package chat

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestValidRoom(t *testing.T) {
	for _, ok := range []string{"chat", "dev", "a", "team-42_x", strings.Repeat("z", MaxRoomLen)} {
		if !ValidRoom(ok) {
			t.Errorf("ValidRoom(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "Dev", "dev ops", "dév", "a/b", "{x}", "x:y", "a=b", "a,b", strings.Repeat("z", MaxRoomLen+1), "a\x00"} {
		if ValidRoom(bad) {
			t.Errorf("ValidRoom(%q) = true", bad)
		}
	}
}

func TestCanonicalRoom(t *testing.T) {
	for in, want := range map[string]string{"dev": "dev", "Dev": "dev", "OPS-1": "ops-1"} {
		if got, ok := CanonicalRoom(in); !ok || got != want {
			t.Errorf("CanonicalRoom(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "dé", "a b", "İ", strings.Repeat("A", MaxRoomLen+1)} {
		if got, ok := CanonicalRoom(bad); ok {
			t.Errorf("CanonicalRoom(%q) = %q, true", bad, got)
		}
	}
}

func TestSortRooms(t *testing.T) {
	got := SortRooms([]string{"ops", "chat", "dev", "ops", "a"})
	if strings.Join(got, " ") != "chat a dev ops" {
		t.Fatalf("SortRooms = %v", got)
	}
}

func TestPositionsRoundTrip(t *testing.T) {
	rooms := SortRooms([]string{"dev", "chat", "ops"})
	pos := map[string]ID{"chat": {1733050000000, 0}, "dev": {1733050001234, 1}}
	s := FormatPositions(rooms, pos)
	if s != "1733050000000-0,dev=1733050001234-1,ops=0-0" {
		t.Fatalf("FormatPositions = %q", s)
	}
	back, err := ParsePositions(s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ID{"chat": {1733050000000, 0}, "dev": {1733050001234, 1}, "ops": {}}
	if !maps.Equal(back, want) {
		t.Fatalf("ParsePositions = %v, want %v", back, want)
	}
	// A plain ID, as the previous version and a default-room-only stream
	// send, is the default room's position.
	if p, err := ParsePositions("5-3"); err != nil || !maps.Equal(p, map[string]ID{"chat": {5, 3}}) {
		t.Fatalf("ParsePositions(5-3) = %v, %v", p, err)
	}
}

func TestParsePositionsRejects(t *testing.T) {
	for _, bad := range []string{
		"", ",", "5-3,", "dev=", "=5-3", "Dev=5-3", "dev=5", "dev=x-1", "5-3,7-1", "dev=1-1,dev=2-2",
		"dev=1-1;ops=2-2", " 5-3", "a b=1-1",
		strings.Repeat("r=1-1,", MaxPositionRooms) + "s=1-1",
		"dev=" + strings.Repeat("1", MaxPositionLen) + "-1",
	} {
		if p, err := ParsePositions(bad); err == nil || !errors.Is(err, ErrPosition) {
			t.Errorf("ParsePositions(%.60q) = %v, %v; want an ErrPosition", bad, p, err)
		}
	}
}
