package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"chatroom/internal/redistest"
)

// TestPublicURLParse: valid public URLs become the origins browsers send
// (lower case, default port dropped, the trailing "/" allowed).
func TestPublicURLParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"https://chat.example.org", []string{"https://chat.example.org"}},
		{"https://Chat.Example.ORG/", []string{"https://chat.example.org"}},
		{"HTTPS://chat.example.org:443", []string{"https://chat.example.org"}},
		{"http://chat.lan:80/", []string{"http://chat.lan"}},
		{"http://chat.lan:8080", []string{"http://chat.lan:8080"}},
		{"http://[::1]:5000", []string{"http://[::1]:5000"}},
		{"https://chat.example.org, http://chat.lan:8080 ,", []string{"https://chat.example.org", "http://chat.lan:8080"}},
	} {
		got, err := parsePublicURLs(tc.in)
		if err != nil || !slices.Equal(got, publicURLs(tc.want)) {
			t.Errorf("parsePublicURLs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestPublicURLInvalid: a bad public URL, as a flag or in the environment,
// stops the start with one line naming the setting.
func TestPublicURLInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"no scheme", "chat.example.org", "want an absolute http:// or https:// URL"},
		{"other scheme", "ftp://chat.example.org", "want an absolute http:// or https:// URL"},
		{"no host", "https://", "no host"},
		{"port only", "https://:443", "no host"},
		{"path", "https://chat.example.org/chat", "no path allowed"},
		{"query", "https://chat.example.org/?a=1", "no query or fragment"},
		{"empty query", "https://chat.example.org/?", "no query or fragment"},
		{"fragment", "https://chat.example.org/#top", "no query or fragment"},
		{"user", "https://me@chat.example.org", "no user info"},
		{"bad port", "https://chat.example.org:99999", "bad port"},
		{"empty port", "https://chat.example.org:", "empty port"},
		{"not ASCII", "https://chät.example.org", "punycode"},
		{"second one bad", "https://chat.example.org,chat.lan", "want an absolute"},
	} {
		for _, how := range []string{"flag", "env"} {
			t.Run(tc.name+" "+how, func(t *testing.T) {
				args := []string{"chatroom", "-addr", "127.0.0.1:0"}
				env := map[string]string{}
				if how == "flag" {
					args = append(args, "-public-url", tc.value)
				} else {
					env["PUBLIC_URL"] = tc.value
				}
				var out bytes.Buffer
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := run(ctx, args, func(k string) string { return env[k] }, &out)
				if err == nil {
					t.Fatalf("run accepted public URL %q\n%s", tc.value, out.String())
				}
				msg := err.Error()
				if strings.Contains(msg, "\n") || !strings.Contains(msg, "-public-url (PUBLIC_URL)") || !strings.Contains(msg, tc.want) {
					t.Fatalf("error %q: want one line naming -public-url (PUBLIC_URL) and saying %q", msg, tc.want)
				}
				if strings.Contains(out.String(), "chat is ready") {
					t.Fatal("the server started despite the bad public URL")
				}
			})
		}
	}
}

// TestPublicURLSecureCookies: an https public URL marks the session cookie
// Secure (even on a plain-HTTP hop from the proxy); an http one does not.
// Both are logged at start.
func TestPublicURLSecureCookies(t *testing.T) {
	rs := redistest.Start(t)
	for _, tc := range []struct {
		public string
		secure bool
	}{
		{"https://chat.example.org", true},
		{"http://chat.lan:8080", false},
	} {
		t.Run(tc.public, func(t *testing.T) {
			srv := startServer(t, rs.URL(), "-public-url", tc.public)
			if !strings.Contains(srv.logs.String(), `msg="public url" origins=`+tc.public) {
				t.Fatalf("start log does not name the public URL %s:\n%s", tc.public, srv.logs)
			}
			c := newClient(t, srv.URL)
			resp := c.postForm("/login", url.Values{"user": {"carol"}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d %s", resp.StatusCode, resp.body)
			}
			var found bool
			for _, ck := range resp.Cookies() {
				if ck.Name == sessionCookie {
					found = true
					if ck.Secure != tc.secure {
						t.Fatalf("session cookie Secure=%v with public URL %s, want %v (%s)", ck.Secure, tc.public, tc.secure, resp.Header.Values("Set-Cookie"))
					}
				}
			}
			if !found {
				t.Fatal("no session cookie set")
			}
		})
	}
}
