package presence

import (
	"chatroom/internal/chat"
)

// Keys of room R. The {R} hash tag puts all of them, and the room's channel
// (whose slot is that of its name), in one cluster slot, so each script
// touches one slot.
func roomPrefix(room string) string    { return "chat:{" + room + "}:" }
func onlineKey(room string) string     { return roomPrefix(room) + "online" }
func namesKey(room string) string      { return roomPrefix(room) + "names" }
func holdersKey(room string) string    { return roomPrefix(room) + "holders" }
func instPrefix(room string) string    { return roomPrefix(room) + "inst:" }
func instKey(room, inst string) string { return instPrefix(room) + inst }

// channel is the room's pub/sub channel: literally "chat" for the default
// room (the tutorial's channel), "chat:{R}" for any other.
func channel(room string) string {
	if room == chat.DefaultRoom {
		return room
	}
	return "chat:{" + room + "}"
}

// validRoom reports whether room is a room name: ^[a-z0-9_-]{1,32}$. It
// matters here beyond tidiness: a "}" would break the hash tag.
func validRoom(room string) bool {
	if len(room) == 0 || len(room) > 32 {
		return false
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maxUIDLen bounds a uid in bytes (a user's canonical key is at most
// chat.MaxNameLen characters).
const maxUIDLen = 4 * 64

// validUID reports whether uid can be stored: non-empty, bounded and free of
// "\n", which separates the uid from the instance in a holder member.
func validUID(uid string) bool {
	if uid == "" || len(uid) > maxUIDLen {
		return false
	}
	for i := 0; i < len(uid); i++ {
		if uid[i] == '\n' {
			return false
		}
	}
	return true
}
