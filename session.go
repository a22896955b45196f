package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
)

const (
	sessionCookie = "chat_session"
	// sharedSecretKey holds the session secret that instances generate and
	// share when the operator configured none.
	sharedSecretKey = "chat:session-secret"
)

// identity is who a session belongs to.
type identity struct {
	Name string // display name
	UID  string // canonical name
	SID  string // random per login: counts this login's open streams
}

// sessionStore keeps the identity in a signed and encrypted cookie.
type sessionStore struct {
	store   *sessions.CookieStore
	proxies proxyTrust
	secure  bool // always mark cookies Secure (served over HTTPS)
	maxAge  time.Duration
}

// newSessionStore builds the cookie store from secrets, newest first: the
// first one signs new cookies, all of them verify (rotation without logging
// everyone out).
func newSessionStore(secrets []string, maxAge time.Duration, secure bool, proxies proxyTrust) *sessionStore {
	var pairs [][]byte
	for _, s := range secrets {
		pairs = append(pairs, derive(s, "chat session signing", sha512.Size), derive(s, "chat session encryption", 32))
	}
	st := sessions.NewCookieStore(pairs...)
	st.MaxAge(int(maxAge.Seconds()))
	return &sessionStore{store: st, proxies: proxies, secure: secure, maxAge: maxAge}
}

// derive turns a secret into a key of n bytes for one purpose (HMAC as a
// KDF), so one configured secret yields independent signing and encryption keys.
func derive(secret, purpose string, n int) []byte {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(purpose))
	return m.Sum(nil)[:n]
}

// sessionSecrets returns the configured secrets or, when there are none, the
// secret shared by all instances through Redis (created by the first one).
func sessionSecrets(ctx context.Context, rdb redis.UniversalClient, configured []string) ([]string, bool, error) {
	if len(configured) > 0 {
		return configured, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.SetNX(ctx, sharedSecretKey, rand.Text()+rand.Text(), 0).Err(); err != nil {
		return nil, false, fmt.Errorf("store session secret: %w", err)
	}
	s, err := rdb.Get(ctx, sharedSecretKey).Result()
	if err != nil {
		return nil, false, fmt.Errorf("read session secret: %w", err)
	}
	return []string{s}, true, nil
}

// readKeyFile returns the session secrets of a key file: one per line,
// newest first, blank lines and lines starting with # ignored. A missing
// file is created (mode 0600, never overwriting one that appears meanwhile)
// holding one random secret; a file that the group or others may read or
// write is refused, like ssh refuses such a key.
func readKeyFile(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		f, cerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if cerr == nil {
			_, werr := fmt.Fprintln(f, rand.Text()+rand.Text())
			if cerr = f.Close(); werr != nil {
				cerr = werr
			}
		}
		if cerr != nil && !errors.Is(cerr, fs.ErrExist) {
			return nil, fmt.Errorf("create session key file: %w", cerr)
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("session key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session key file %s may be read by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("session key file: %w", err)
	}
	var keys []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if len(line) < 32 {
				return nil, fmt.Errorf("session key file %s: each secret must be at least 32 characters", path)
			}
			keys = append(keys, line)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("session key file %s holds no secret", path)
	}
	return keys, nil
}

// get returns the request's identity, if it carries a valid session. A
// forged, expired or garbled cookie is simply no session.
func (s *sessionStore) get(r *http.Request) (identity, bool) {
	sess, err := s.store.Get(r, sessionCookie)
	if err != nil || sess.IsNew {
		return identity{}, false
	}
	name, _ := sess.Values["name"].(string)
	uid, _ := sess.Values["uid"].(string)
	sid, _ := sess.Values["sid"].(string)
	if name == "" || uid == "" || sid == "" {
		return identity{}, false
	}
	return identity{Name: name, UID: uid, SID: sid}, true
}

func (s *sessionStore) options(r *http.Request, maxAge int) *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   s.secure || s.proxies.isHTTPS(r),
	}
}

// login starts a session for who.
func (s *sessionStore) login(w http.ResponseWriter, r *http.Request, who identity) error {
	sess, _ := s.store.New(r, sessionCookie) // a bad old cookie just gets replaced
	sess.Values["name"] = who.Name
	sess.Values["uid"] = who.UID
	sess.Values["sid"] = who.SID
	sess.Options = s.options(r, int(s.maxAge.Seconds()))
	if err := sess.Save(r, w); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// logout deletes the session cookie.
func (s *sessionStore) logout(w http.ResponseWriter, r *http.Request) {
	c := &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: s.secure || s.proxies.isHTTPS(r)}
	http.SetCookie(w, c)
}

// proxyTrust knows which reverse proxies may speak for the client through
// X-Forwarded-For and X-Forwarded-Proto. Nothing is trusted by default.
type proxyTrust []netip.Prefix

func parseProxies(list string) (proxyTrust, error) {
	var out proxyTrust
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (t proxyTrust) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// clientIP is the address rate limits apply to: the peer, or behind trusted
// proxies the right-most X-Forwarded-For address that is not one of them.
func (t proxyTrust) clientIP(r *http.Request) string {
	peer := remoteAddr(r)
	if !t.trusts(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !t.trusts(a) {
			return a.Unmap().String()
		}
	}
	return peer.String()
}

// isHTTPS reports whether the client reached us over HTTPS: directly, or
// through a trusted proxy that says so.
func (t proxyTrust) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return t.trusts(remoteAddr(r)) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
