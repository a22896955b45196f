package chat

import (
	"strings"
	"testing"
	"time"
)

// TestModerationEntries: moderation entries round-trip through their stored
// form, and a malformed one (from Redis, like any input) is refused.
func TestModerationEntries(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	id := ID{Ms: 2000, Seq: 0}
	for _, op := range []string{OpDelete, OpEdit} {
		in := Message{User: "Root", UID: "root", Time: at, Op: op, Target: "1000-3", Text: "new text"}
		if op == OpDelete {
			in.Text = ""
		}
		raw, err := in.Body()
		if err != nil {
			t.Fatal(err)
		}
		if op == OpEdit && strings.Contains(string(raw), `"text"`) {
			t.Errorf("an edit stores its text as \"text\", which an older version would show as a message: %s", raw)
		}
		m, err := DecodeStored("dev", id, 7, raw)
		if err != nil || m.Op != op || m.Target != "1000-3" || m.Text != in.Text || m.Room != "dev" || (op == OpEdit) != (m.Edited != nil) {
			t.Errorf("%s: %+v, %v", op, m, err)
		}
	}
	for _, raw := range []string{
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"rename","target":"1000-0"}`,
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"delete"}`,
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"delete","target":"x"}`,
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"delete","target":"3000-0"}`, // not older than the entry
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"delete","target":"0-0"}`,
		`{"user":"","uid":"a","time":"2026-12-01T12:00:00Z","op":"delete","target":"1000-0"}`,
		`{"user":"a","uid":"a","op":"delete","target":"1000-0"}`,
		`{"user":"a","uid":"a","time":"2026-12-01T12:00:00Z","op":"edit","target":"1000-0"}`,
	} {
		if m, err := DecodeStored("dev", id, 7, []byte(raw)); err == nil {
			t.Errorf("accepted %s as %+v", raw, m)
		}
	}
}
