package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
)

// examplePath turns a route pattern into a request path with plausible
// values, and gives the body a write needs to get past decoding.
func examplePath(pattern string) (method, path, body string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "/v1/schemas/{name}", "/v1/schemas/erasure.command.v1.json")
	path = strings.ReplaceAll(path, "{name}", "orders")
	path = strings.ReplaceAll(path, "{id}", "6f1c2c1e-8a9b-4c1d-9e2f-0a1b2c3d4e5f")
	path = strings.ReplaceAll(path, "{digest}", strings.Repeat("ab", 32))
	switch method {
	case "PUT", "POST":
		body = `{}`
	}
	return method, path, body
}

// TestEveryRouteRefusesBadCredentials sends every guarded route each kind
// of bad credential and checks the exact answer, its challenge, and that
// nothing reached the store, the engine or Kafka.
func TestEveryRouteRefusesBadCredentials(t *testing.T) {
	h := newHarness(t)
	unauthenticated := []struct {
		name, header string
	}{
		{"no header", "-"},
		{"basic scheme", "Basic dXNlcjpwYXNz"},
		{"empty bearer", "Bearer "},
		{"bearer alone", "Bearer"},
		{"two tokens", "Bearer a b"},
		{"quoted token", `Bearer "lethe_x"`},
		{"garbage", "Bearer ###"},
		{"unknown token", "Bearer lethe_unknown"},
		{"revoked or expired token", "Bearer lethe_revoked"},
	}
	guarded := 0
	for _, pattern := range h.server.Routes() {
		scope, open := h.server.RouteScope(pattern)
		if open {
			continue
		}
		guarded++
		method, path, body := examplePath(pattern)
		for _, c := range unauthenticated {
			t.Run(pattern+"/"+c.name, func(t *testing.T) {
				res := h.do(t, req{method: method, path: path, body: body,
					headers: map[string]string{"Authorization": c.header}})
				if res.status != http.StatusUnauthorized || res.errorCode(t) != "unauthenticated" {
					t.Fatalf("%s = %s, want 401 unauthenticated", pattern, describe(res))
				}
				if ch := res.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `Bearer realm="lethe"`) {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", ch)
				}
			})
		}
		t.Run(pattern+"/scope one short", func(t *testing.T) {
			// A connector route also serves systems:admin: every scope
			// but that one carries no connector:<name> either.
			short := scope
			if strings.HasPrefix(string(scope), auth.ConnectorScopePrefix) {
				short = auth.SystemsAdmin
			}
			res := h.do(t, req{method: method, path: path, body: body,
				headers: map[string]string{"Authorization": "Bearer " + allButToken(short)}})
			if res.status != http.StatusForbidden || res.errorCode(t) != "insufficient_scope" {
				t.Fatalf("%s without %s = %s, want 403 insufficient_scope", pattern, scope, describe(res))
			}
			if ch := res.header.Get("WWW-Authenticate"); !strings.Contains(ch, `scope="`+string(scope)+`"`) {
				t.Errorf("WWW-Authenticate = %q, want it to name %s", ch, scope)
			}
		})
	}
	if guarded < 15 {
		t.Fatalf("only %d guarded routes; the table lost some", guarded)
	}
	starts, cancels := h.engine.counts()
	if n := h.store.writeCount(); n != 0 || starts != 0 || cancels != 0 || h.topics.count() != 0 || len(h.engine.lifts) != 0 ||
		len(h.engine.extends) != 0 || h.engine.retryCount() != 0 {
		t.Errorf("refused calls wrote: store %d, starts %d, cancels %d, topics %d, lifts %d, extends %d, retries %d",
			n, starts, cancels, h.topics.count(), len(h.engine.lifts), len(h.engine.extends), h.engine.retryCount())
	}
}

// TestOpenRoutesNeedNoCredential checks the routes left open (health, the
// signing keys, the OpenAPI document and the wire schemas), and that they
// are the only ones.
func TestOpenRoutesNeedNoCredential(t *testing.T) {
	h := newHarness(t)
	var open []string
	for _, pattern := range h.server.Routes() {
		if _, ok := h.server.RouteScope(pattern); ok {
			open = append(open, pattern)
		}
	}
	slices.Sort(open)
	want := []string{"GET /healthz", "GET /readyz", "GET /v1/keys", "GET /v1/openapi.json", "GET /v1/schemas/{name}"}
	if !slices.Equal(open, want) {
		t.Fatalf("open routes = %v, want %v", open, want)
	}
	for _, pattern := range open {
		_, path, _ := examplePath(pattern)
		res := h.do(t, req{method: "GET", path: path, headers: map[string]string{"Authorization": "-"}})
		if res.status != http.StatusOK {
			t.Errorf("%s without a credential = %s, want 200", pattern, describe(res))
		}
	}
}

// TestScopesOfTheContract pins each route's scope to the contract's table,
// so that a change to the table is a visible change to this test.
func TestScopesOfTheContract(t *testing.T) {
	want := map[string]auth.Scope{
		"PUT /v1/systems/{name}":              auth.SystemsWrite,
		"GET /v1/systems/{name}":              auth.SystemsRead,
		"GET /v1/systems/{name}/stats":        auth.SystemsRead,
		"DELETE /v1/systems/{name}":           auth.SystemsWrite,
		"GET /v1/systems":                     auth.SystemsRead,
		"POST /v1/systems/{name}/credentials": auth.SystemsWrite,
		"POST /v1/erasures":                   auth.ErasuresWrite,
		"GET /v1/erasures/{id}":               auth.ErasuresRead,
		"GET /v1/erasures":                    auth.ErasuresRead,
		"POST /v1/erasures/{id}/cancel":       auth.ErasuresAdmin,
		"POST /v1/erasures/{id}/extend":       auth.ErasuresAdmin,
		"POST /v1/erasures/{id}/retry":        auth.ErasuresAdmin,
		"POST /v1/erasures/retry":             auth.ErasuresAdmin,
		"POST /v1/erasures/plan":              auth.ErasuresRead,
		"PUT /v1/holds/{id}":                  auth.HoldsWrite,
		"GET /v1/holds/{id}":                  auth.HoldsRead,
		"DELETE /v1/holds/{id}":               auth.HoldsWrite,
		"GET /v1/holds":                       auth.HoldsRead,
		"GET /v1/erasures/{id}/certificate":   auth.CertificatesRead,
		"GET /v1/suppressions":                auth.SuppressionsRead,

		"GET /v1/systems/{name}/commands":       "connector:{name}",
		"POST /v1/systems/{name}/confirmations": "connector:{name}",

		"POST /v1/erasure-batches":                             auth.ErasuresWrite,
		"GET /v1/erasure-batches":                              auth.ErasuresRead,
		"GET /v1/erasure-batches/{id}":                         auth.ErasuresRead,
		"GET /v1/erasure-batches/{id}/subjects":                auth.ErasuresRead,
		"POST /v1/erasure-batches/{id}/cancel":                 auth.ErasuresAdmin,
		"POST /v1/erasure-batches/{id}/retry":                  auth.ErasuresAdmin,
		"GET /v1/erasure-batches/{id}/certificate":             auth.CertificatesRead,
		"GET /v1/erasure-batches/{id}/subjects/{digest}/proof": auth.CertificatesRead,
	}
	h := newHarness(t)
	for _, pattern := range h.server.Routes() {
		scope, open := h.server.RouteScope(pattern)
		if open {
			continue
		}
		if w, ok := want[pattern]; !ok || w != scope {
			t.Errorf("%s needs %q, want %q", pattern, scope, w)
		}
	}
}

// TestAuthUnavailable checks that a verifier that cannot decide answers
// 503, not 401: the caller's credential may be fine.
func TestAuthUnavailable(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.Auth = &fakeVerifier{unavailable: true} })
	res := h.do(t, req{method: "GET", path: "/v1/systems"})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "auth_unavailable" {
		t.Fatalf("GET with the verifier down = %s, want 503 auth_unavailable", describe(res))
	}
	if strings.Contains(h.logs.String(), allScopesToken) {
		t.Error("the credential was logged")
	}
}

// TestRefusalLogNamesNoCredential checks that the log says why a credential
// was refused, and never shows the credential.
func TestRefusalLogNamesNoCredential(t *testing.T) {
	h := newHarness(t)
	h.do(t, req{method: "GET", path: "/v1/systems", headers: map[string]string{"Authorization": "Bearer lethe_canarycredential"}})
	logs := h.logs.String()
	if !strings.Contains(logs, "credential refused") || !strings.Contains(logs, "unknown credential") {
		t.Errorf("log lacks the refusal and its reason:\n%s", logs)
	}
	if strings.Contains(logs, "canarycredential") {
		t.Errorf("log shows the credential:\n%s", logs)
	}
}

// TestRequestLogNamesPrincipal checks that each request's log line says who
// made it.
func TestRequestLogNamesPrincipal(t *testing.T) {
	h := newHarness(t)
	h.do(t, req{method: "GET", path: "/v1/systems"})
	if !strings.Contains(h.logs.String(), `"principal":"token:all"`) {
		t.Errorf("request log lacks the principal:\n%s", h.logs.String())
	}
}

// fakeLimiter refuses every call of the subjects it lists.
type fakeLimiter struct{ refuse map[string]bool }

func (l fakeLimiter) Allow(subject string) (bool, time.Duration) {
	if l.refuse[subject] {
		return false, 1500 * time.Millisecond
	}
	return true, 0
}

// TestRateLimitedAnswers429 checks the answer to a principal over its rate:
// 429, Retry-After in whole seconds rounded up, nothing written.
func TestRateLimitedAnswers429(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) {
		c.Limiter = fakeLimiter{refuse: map[string]bool{"token:all": true}}
	})
	res := h.putSystem(t, "orders", `{"identifiers":["user_id"]}`)
	if res.status != http.StatusTooManyRequests || res.errorCode(t) != "rate_limited" {
		t.Fatalf("PUT over the rate = %s, want 429 rate_limited", describe(res))
	}
	if got := res.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2", got)
	}
	if h.store.writeCount() != 0 || h.topics.count() != 0 {
		t.Error("a rate-limited call wrote")
	}
	other := h.do(t, req{method: "GET", path: "/v1/systems",
		headers: map[string]string{"Authorization": "Bearer " + allButToken(auth.CodecDecode)}})
	if other.status != http.StatusOK {
		t.Errorf("another principal = %s, want 200", describe(other))
	}
}

// TestHostCheckStopsDNSRebinding checks that an API restricted to loopback
// host names refuses a request for any other name, before authentication.
func TestHostCheckStopsDNSRebinding(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.AllowedHosts = api.LoopbackHosts })
	for host, want := range map[string]int{
		"127.0.0.1:8080":        http.StatusOK,
		"localhost:8080":        http.StatusOK,
		"[::1]:8080":            http.StatusOK,
		"LOCALHOST":             http.StatusOK,
		"attacker.example:8080": http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io":      http.StatusMisdirectedRequest,
	} {
		res := h.do(t, req{method: "GET", path: "/v1/systems", headers: map[string]string{"Host": host}})
		if res.status != want {
			t.Errorf("Host %s = %s, want %d", host, describe(res), want)
		}
		if want != http.StatusOK && res.errorCode(t) != "host_not_allowed" {
			t.Errorf("Host %s: code %s, want host_not_allowed", host, res.errorCode(t))
		}
	}
}

// TestAuthOffRecordsAnonymous checks LETHE_AUTH=off: no credential needed,
// and what is written names the anonymous actor.
func TestAuthOffRecordsAnonymous(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.Auth, c.AuthOff = nil, true })
	res := h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":"u-1"}}`,
		headers: map[string]string{"Authorization": "-"}})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST with auth off = %s, want 202", describe(res))
	}
	var e struct {
		CreatedBy string `json:"created_by"`
	}
	res.decode(t, &e)
	if e.CreatedBy != api.Anonymous || len(h.store.created) != 1 || h.store.created[0].CreatedBy != api.Anonymous {
		t.Errorf("created_by = %q, stored %+v; want %q", e.CreatedBy, h.store.created, api.Anonymous)
	}
}

// TestTopicChangeNeedsSystemsAdmin checks that moving an existing system's
// commands to another topic is refused without systems:admin before any
// topic is created or anything stored, and allowed with it.
func TestTopicChangeNeedsSystemsAdmin(t *testing.T) {
	h := newHarness(t)
	if res := h.putSystem(t, "orders", `{"identifiers":["user_id"]}`); res.status != http.StatusCreated {
		t.Fatalf("create = %s", describe(res))
	}
	writes, topics := h.store.writeCount(), h.topics.count()
	noAdmin := map[string]string{"Authorization": "Bearer " + allButToken(auth.SystemsAdmin)}
	res := h.do(t, req{method: "PUT", path: "/v1/systems/orders", headers: noAdmin,
		body: `{"identifiers":["user_id"],"topic":"attacker.reads.this"}`})
	if res.status != http.StatusForbidden || res.errorCode(t) != "insufficient_scope" {
		t.Fatalf("topic change without systems:admin = %s, want 403 insufficient_scope", describe(res))
	}
	if h.store.writeCount() != writes || h.topics.count() != topics {
		t.Errorf("the refused change wrote: store %d→%d, topics %d→%d", writes, h.store.writeCount(), topics, h.topics.count())
	}
	// The same caller may still replace everything else.
	if res := h.do(t, req{method: "PUT", path: "/v1/systems/orders", headers: noAdmin,
		body: `{"identifiers":["user_id","email"]}`}); res.status != http.StatusOK {
		t.Errorf("replace keeping the topic without systems:admin = %s, want 200", describe(res))
	}
	if res := h.putSystem(t, "orders", `{"identifiers":["user_id"],"topic":"lethe.erasure.orders-v2"}`); res.status != http.StatusOK {
		t.Errorf("topic change with systems:admin = %s, want 200", describe(res))
	}
}
