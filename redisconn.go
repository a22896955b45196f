package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisConn is an open connection to the Redis deployment.
type redisConn struct {
	client  redis.UniversalClient
	sharded bool   // a cluster: use sharded pub/sub
	kind    string // for the log: embedded, single, sentinel, cluster
	close   func()
}

// openRedis connects to url, or starts an embedded Redis when url is empty
// (keeping its data in dataDir unless that is empty). It fails with a
// one-line error when Redis cannot be reached.
func openRedis(ctx context.Context, rawURL string, log *slog.Logger, dataDir string, saveInterval time.Duration) (*redisConn, error) {
	redis.SetLogger(goRedisLog{log})
	var rc *redisConn
	if rawURL == "" {
		e, err := startEmbedded(dataDir, saveInterval, log)
		if err != nil {
			return nil, err
		}
		if dataDir == "" {
			log.Info("REDIS_URL not set: using an embedded in-memory Redis that keeps nothing (-data-dir off); set REDIS_URL or -redis for a real one", "addr", e.Addr())
		} else {
			log.Info("REDIS_URL not set: using an embedded Redis, saved to -data-dir; set REDIS_URL or -redis for a real one", "addr", e.Addr())
		}
		c := redis.NewClient(&redis.Options{Addr: e.Addr()})
		rc = &redisConn{client: c, kind: "embedded", close: func() { c.Close(); e.Close() }}
	} else {
		c, sharded, kind, err := newRedisClient(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", redactURL(rawURL), err)
		}
		rc = &redisConn{client: c, sharded: sharded, kind: kind, close: func() { c.Close() }}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rc.client.Ping(pctx).Err(); err != nil {
		rc.close()
		return nil, fmt.Errorf("cannot reach Redis at %s: %v", redactURL(rawURL), err)
	}
	return rc, nil
}

// goRedisLog takes go-redis's internal log lines into our log. Failed dials
// and reconnects during an outage are at debug level (our code logs each
// failure once where it handles it, and a start that cannot reach Redis must
// fail with one line); everything else, such as "channel is full … message
// is dropped" from a pub/sub subscription that fell behind, is a warning.
// go-redis's logger is process-wide (and atomic): with several servers in
// one process, as in tests, the last one started gets the lines.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	msg := "go-redis: " + fmt.Sprintf(format, v...)
	if strings.Contains(msg, "dial") || strings.Contains(msg, "connection refused") || strings.Contains(msg, "reconnect") {
		l.log.DebugContext(ctx, msg)
		return
	}
	l.log.WarnContext(ctx, msg)
}

// newRedisClient builds a client for any supported URL form:
//
//	redis://[user:pass@]host:port[/db]   rediss:// for TLS
//	unix://[user:pass@]/path/to/redis.sock[?db=N]
//	redis+sentinel://[user:pass@]host:port[,host:port...]/master[/db]
//	redis+cluster://[user:pass@]host:port[,host:port...]
//
// (rediss+sentinel and rediss+cluster use TLS.) Every form becomes a
// go-redis UniversalClient, so the rest of the server cannot tell them apart.
func newRedisClient(raw string) (c redis.UniversalClient, sharded bool, kind string, err error) {
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, false, "", err
		}
		return redis.NewClient(o), false, "single", nil
	case "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
	default:
		return nil, false, "", fmt.Errorf("unsupported scheme %q", scheme)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, false, "", err
	}
	addrs := strings.Split(u.Host, ",")
	for _, a := range addrs {
		if !strings.Contains(a, ":") {
			return nil, false, "", fmt.Errorf("address %q needs a port", a)
		}
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	var tlsCfg *tls.Config
	if strings.HasPrefix(scheme, "rediss") {
		host, _, _ := strings.Cut(addrs[0], ":")
		tlsCfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if strings.HasSuffix(scheme, "+cluster") {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: addrs, Username: user, Password: pass, TLSConfig: tlsCfg,
		}), true, "cluster", nil
	}
	parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 2 {
		return nil, false, "", fmt.Errorf("sentinel URL path must be /master-name[/db]")
	}
	db := 0
	if len(parts) == 2 {
		if db, err = strconv.Atoi(parts[1]); err != nil {
			return nil, false, "", fmt.Errorf("bad database number %q", parts[1])
		}
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: parts[0], SentinelAddrs: addrs, Username: user, Password: pass,
		SentinelPassword: pass, DB: db, TLSConfig: tlsCfg,
	}), false, "sentinel", nil
}

// redactURL hides a password in a Redis URL, for logs and errors.
func redactURL(raw string) string {
	if raw == "" {
		return "(embedded)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
