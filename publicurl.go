package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// publicURLs are the site's public URLs (-public-url), as the origins a
// browser names in its Origin header: scheme "://" host[":" port], lower
// case, the scheme's default port left out.
type publicURLs []string

// parsePublicURLs parses a comma-separated list of public URLs. Each must be
// an absolute http or https URL with a host and nothing after it but an
// optional "/": no user, path, query or fragment.
func parsePublicURLs(s string) (publicURLs, error) {
	var out publicURLs
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		origin, err := parseOrigin(raw)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", raw, err)
		}
		out = append(out, origin)
	}
	return out, nil
}

func parseOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("want an absolute http:// or https:// URL")
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("no host")
	case u.User != nil:
		return "", fmt.Errorf("no user info allowed")
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("no path allowed (the chat is served at the root)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return "", fmt.Errorf("no query or fragment allowed")
	}
	host := strings.ToLower(u.Hostname())
	for _, r := range host {
		if r > 0x7f {
			return "", fmt.Errorf("host must be ASCII (use the punycode form, as browsers send it)")
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad port %q", p)
		}
		if !(scheme == "http" && n == 80 || scheme == "https" && n == 443) {
			host += ":" + strconv.Itoa(n)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("empty port")
	}
	origin := scheme + "://" + host
	// The same rules as the CSRF check's own.
	if err := http.NewCrossOriginProtection().AddTrustedOrigin(origin); err != nil {
		return "", err
	}
	return origin, nil
}

// https reports whether any public URL is https: the site is served over
// HTTPS, so session cookies are marked Secure.
func (p publicURLs) https() bool {
	for _, o := range p {
		if strings.HasPrefix(o, "https://") {
			return true
		}
	}
	return false
}

// String lists the origins, comma-separated.
func (p publicURLs) String() string { return strings.Join(p, ",") }
