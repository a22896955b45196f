package presence

import (
	"strings"
	"testing"
)

func TestParseAnnouncement(t *testing.T) {
	long := strings.Repeat("x", maxPayload)
	tests := []struct {
		name, payload string
		want          Announcement
		ok            bool
	}{
		{"join", `presence:{"kind":"join","room":"dev","user":"Alice","uid":"alice"}`, Announcement{"join", "dev", "Alice", "alice"}, true},
		{"leave, escaped slash as Redis's cjson writes it", `presence:{"kind":"leave","room":"chat","user":"a\/b","uid":"a\/b"}`, Announcement{"leave", "chat", "a/b", "a/b"}, true},
		{"field order and extra fields", `presence:{"uid":"bob","user":"Bob","room":"x_1","kind":"join","extra":1}`, Announcement{"join", "x_1", "Bob", "bob"}, true},
		{"no prefix", `{"kind":"join","room":"dev","user":"Alice","uid":"alice"}`, Announcement{}, false},
		{"message payload", `1733050000000-0 1 {"user":"x"}`, Announcement{}, false},
		{"typing payload", `typing:{"room":"dev","user":"Alice","uid":"alice"}`, Announcement{}, false},
		{"unknown kind", `presence:{"kind":"typing","room":"dev","user":"Alice","uid":"alice"}`, Announcement{}, false},
		{"invalid room", `presence:{"kind":"join","room":"Dev}","user":"Alice","uid":"alice"}`, Announcement{}, false},
		{"empty uid", `presence:{"kind":"join","room":"dev","user":"Alice","uid":""}`, Announcement{}, false},
		{"newline in uid", `presence:{"kind":"join","room":"dev","user":"Alice","uid":"a\nb"}`, Announcement{}, false},
		{"no user", `presence:{"kind":"join","room":"dev","uid":"alice"}`, Announcement{}, false},
		{"not JSON", `presence:join dev alice`, Announcement{}, false},
		{"trailing garbage", `presence:{"kind":"join","room":"dev","user":"A","uid":"a"} x`, Announcement{}, false},
		{"invalid UTF-8", "presence:{\"kind\":\"join\",\"room\":\"dev\",\"user\":\"\xff\",\"uid\":\"a\"}", Announcement{}, false},
		{"too long", `presence:{"kind":"join","room":"dev","user":"` + long + `","uid":"a"}`, Announcement{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnnouncement(tt.payload)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseAnnouncement(%q) = %+v, %v; want %+v, ok=%v", tt.payload, got, err, tt.want, tt.ok)
			}
		})
	}
}
