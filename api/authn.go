package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe/auth"
)

// RateLimiter bounds how often one principal may call the API; auth.Limiter
// implements it. Allow reports whether to serve the call now and, when not,
// how long the caller should wait.
type RateLimiter interface {
	Allow(subject string) (ok bool, retryAfter time.Duration)
}

// Anonymous is the actor recorded for what callers do while authentication
// is switched off (LETHE_AUTH=off), so that the audit says so rather than
// naming nobody.
const Anonymous = "anonymous"

// authRealm names the protection space in WWW-Authenticate challenges.
const authRealm = "lethe"

// guard is what stands between a request and its route: the Host check
// against DNS rebinding, authentication, the principal's rate and the
// route's scope. It returns the request to serve, carrying the principal,
// or answers the refusal itself and returns nil. A refused request never
// reaches a handler, so it writes nothing anywhere.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, rt route) (*http.Request, string) {
	if rt.open {
		return r, ""
	}
	if s.authOff {
		return r.WithContext(auth.NewContext(r.Context(), auth.Principal{Subject: Anonymous, Scopes: auth.AllScopes})), Anonymous
	}
	credential, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		challenge(w, "")
		writeErrorBody(w, http.StatusUnauthorized, "unauthenticated",
			"this route needs an Authorization: Bearer <token> header")
		return nil, ""
	}
	p, err := s.auth.Verify(r.Context(), credential)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		// The reason goes to the log only: telling a caller why a forged
		// or revoked credential failed helps no honest one.
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "credential refused",
			slog.String("route", rt.pattern), slog.String("reason", err.Error()))
		challenge(w, `error="invalid_token"`)
		writeErrorBody(w, http.StatusUnauthorized, "unauthenticated",
			"the bearer credential is unknown, expired, revoked or not valid for this API")
		return nil, ""
	case err != nil:
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "credential not checked",
			slog.String("route", rt.pattern), slog.String("error", err.Error()))
		writeErrorBody(w, http.StatusServiceUnavailable, "auth_unavailable",
			"the credential could not be checked now; try again later")
		return nil, ""
	}
	if s.limiter != nil {
		if ok, wait := s.limiter.Allow(p.Subject); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(wait)))
			writeErrorBody(w, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("too many requests from this principal; retry in %d s", retrySeconds(wait)))
			return nil, p.Subject
		}
	}
	allowed := p.Has(rt.scope)
	if rt.scope == connectorScope {
		allowed = pullAllowed(p, r)
	}
	if !allowed {
		challenge(w, fmt.Sprintf(`error="insufficient_scope", scope=%q`, rt.scope))
		writeErrorBody(w, http.StatusForbidden, "insufficient_scope",
			fmt.Sprintf("this route needs the %s scope", rt.scope))
		return nil, p.Subject
	}
	return r.WithContext(auth.NewContext(r.Context(), p)), p.Subject
}

// bearer extracts the credential of an "Authorization: Bearer <credential>"
// header. The scheme is case-insensitive (RFC 7235); the credential must be
// one token68 (auth.Token68).
func bearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !auth.Token68(cred) {
		return "", false
	}
	return cred, true
}

// challenge sets the WWW-Authenticate header of a 401 or 403 (RFC 6750 §3).
func challenge(w http.ResponseWriter, params string) {
	v := `Bearer realm="` + authRealm + `"`
	if params != "" {
		v += ", " + params
	}
	w.Header().Set("WWW-Authenticate", v)
}

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// hostAllowed reports whether the request's Host names this API. A page
// on another site can make a browser send requests to a loopback API by
// rebinding its own DNS name to 127.0.0.1; such requests still carry the
// attacker's host name, which this refuses.
func (s *Server) hostAllowed(r *http.Request) bool {
	if len(s.hosts) == 0 {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	return slices.Contains(s.hosts, host)
}

// LoopbackHosts are the Host names a loopback-only API answers to:
// `lethe dev` and an API bound to 127.0.0.1 use them against DNS rebinding.
var LoopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// IsLoopback reports whether addr (host:port) listens on the loopback
// interface only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
