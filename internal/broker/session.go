package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"chatroom/internal/chat"
)

// EndSession records that the session sid logged out (until its cookie
// would have expired) and tells every instance to close its streams.
func (b *Broker) EndSession(ctx context.Context, sid string, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	if err := b.rdb.Set(ctx, loggedOutKey(sid), 1, ttl).Err(); err != nil {
		return fmt.Errorf("record logout: %w", err)
	}
	if err := b.publishRaw(ctx, controlChannel, logoutPrefix+sid); err != nil {
		return fmt.Errorf("announce logout: %w", err)
	}
	return nil
}

// Reasons a session ends other than its own logout, as EndSessions and
// Sink.EndSession name them (the stream's disconnect event says which).
const (
	EndLoggedOut = "logged-out"
	EndBanned    = "banned"
	EndKicked    = "kicked"
)

// EndSessions ends the sessions sids as a logout does (remembered until
// their cookies would have expired; every instance closes their streams),
// for reason, which the streams' disconnect event names.
func (b *Broker) EndSessions(ctx context.Context, sids []string, ttl time.Duration, reason string) error {
	if len(sids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sid := range sids {
			p.Set(ctx, loggedOutKey(sid), 1, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record session ends: %w", err)
	}
	_, err = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sid := range sids {
			payload := endPrefix + reason + ":" + sid
			if b.cfg.Sharded {
				p.SPublish(ctx, controlChannel, payload)
			} else {
				p.Publish(ctx, controlChannel, payload)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("announce session ends: %w", err)
	}
	return nil
}

// LoggedOut reports whether the session sid has logged out.
func (b *Broker) LoggedOut(ctx context.Context, sid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	n, err := b.rdb.Exists(ctx, loggedOutKey(sid)).Result()
	if err != nil {
		return false, fmt.Errorf("check logout: %w", err)
	}
	return n > 0, nil
}

// PublishSignal sends an ephemeral signal (typing) on its room's channel:
// every instance with a stream in the room passes it on; nothing is stored.
func (b *Broker) PublishSignal(ctx context.Context, s chat.Signal) error {
	if !chat.ValidRoom(s.Room) {
		return chat.RoomError(s.Room)
	}
	prefix := typingPrefix
	if s.Kind != chat.SignalTyping {
		prefix = presencePrefix
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpTimeout)
	defer cancel()
	if err := b.publishRaw(ctx, channel(s.Room), prefix+":"+string(data)); err != nil {
		return fmt.Errorf("%w: publish signal: %w", ErrUnavailable, err)
	}
	return nil
}
