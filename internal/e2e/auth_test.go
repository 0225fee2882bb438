package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/apicall"
	"github.com/lethe-dev/lethe/internal/oidctest"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// routeCases are one request per guarded route of the API, with a body a
// handler would accept, so that a refusal is the guard's and not the
// handler's.
func routeCases(s *stack) []struct{ pattern, method, path, body string } {
	id := "6f1c2c1e-8a9b-4c1d-9e2f-0a1b2c3d4e5f"
	return []struct{ pattern, method, path, body string }{
		{"PUT /v1/systems/{name}", "PUT", "/v1/systems/intruder", `{"identifiers":["user_id"]}`},
		{"GET /v1/systems/{name}", "GET", "/v1/systems/orders", ""},
		{"DELETE /v1/systems/{name}", "DELETE", "/v1/systems/orders", ""},
		{"GET /v1/systems", "GET", "/v1/systems", ""},
		{"POST /v1/systems/{name}/credentials", "POST", "/v1/systems/orders/credentials", ""},
		{"POST /v1/erasures", "POST", "/v1/erasures", `{"subject":{"user_id":"u-auth"}}`},
		{"GET /v1/erasures/{id}", "GET", "/v1/erasures/" + id, ""},
		{"GET /v1/erasures", "GET", "/v1/erasures", ""},
		{"POST /v1/erasures/{id}/cancel", "POST", "/v1/erasures/" + id + "/cancel", ""},
		{"POST /v1/erasures/{id}/extend", "POST", "/v1/erasures/" + id + "/extend", `{"by":"240h","reason":"complex request"}`},
		{"PUT /v1/holds/{id}", "PUT", "/v1/holds/case-1", `{"subject":{"user_id":"u-auth"},"basis":"Art. 17(3)(e)"}`},
		{"GET /v1/holds/{id}", "GET", "/v1/holds/case-1", ""},
		{"DELETE /v1/holds/{id}", "DELETE", "/v1/holds/case-1", ""},
		{"GET /v1/holds", "GET", "/v1/holds", ""},
		{"GET /v1/erasures/{id}/certificate", "GET", "/v1/erasures/" + id + "/certificate", ""},
		{"GET /v1/suppressions", "GET", "/v1/suppressions", ""},
	}
}

// kafkaOffsets reads the end offset of every partition of every topic, so
// that a test can tell whether anything was written to Kafka.
func kafkaOffsets(t *testing.T, s *stack) map[string]int64 {
	t.Helper()
	// As the admin on a secure stack, whose ACLs hide topics from others.
	d := s.KafkaAdmin.Dialer()
	conn, err := d.DialContext(s.ctx, "tcp", s.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, p := range parts {
		lc, err := d.DialLeader(s.ctx, "tcp", s.Brokers[0], p.Topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		end, err := lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%d", p.Topic, p.ID)] = end
	}
	return out
}

// TestAuthenticationOnTheRealStack drives the API on PostgreSQL, Temporal
// and Kafka with real credentials: JWTs from an OIDC issuer that rotates
// its key mid-test, and Lethe tokens from the registry. Every kind of bad
// credential is refused on every guarded route with the exact status, and
// no refused call writes to PostgreSQL or Kafka or starts a workflow.
func TestAuthenticationOnTheRealStack(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	s.runConnector("orders", notFoundHandler{})

	jwt := func(sub, scope string, edit func(map[string]any)) string {
		c := s.Issuer.Claims(sub)
		c["scope"] = scope
		if edit != nil {
			edit(c)
		}
		return s.Issuer.Token(c)
	}

	// A person with erasures:write creates a request recorded as theirs.
	writer := jwt("alice@example.org", "erasures:write erasures:read", nil)
	r := s.do("POST", "/v1/erasures", map[string]any{"subject": map[string]string{"user_id": "u-1"}, "requested_by": "ticket-7"},
		"Authorization", "Bearer "+writer)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST with erasures:write = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(t, &e)
	if e.CreatedBy != "alice@example.org" || e.RequestedBy != "ticket-7" {
		t.Errorf("created_by %q, requested_by %q; want the JWT's sub and the caller's reference", e.CreatedBy, e.RequestedBy)
	}
	done := s.await(e.ID, time.Minute)
	if done.Status != lethe.RequestCompleted || done.CreatedBy != "alice@example.org" {
		t.Errorf("request ended %s created by %q", done.Status, done.CreatedBy)
	}
	events, err := s.Store.Audit(s.ctx, e.ID)
	if err != nil || len(events) == 0 || events[0].Actor != "alice@example.org" {
		t.Errorf("first audit event %+v (%v), want it to name alice", events, err)
	}

	// The issuer rotates its key; tokens signed with the new one work.
	s.Issuer.Rotate()
	rotated := jwt("alice@example.org", "erasures:read", nil)
	if r := s.do("GET", "/v1/erasures/"+e.ID, nil, "Authorization", "Bearer "+rotated); r.Status != http.StatusOK {
		t.Errorf("GET with a JWT of the rotated key = %d %s", r.Status, r.Body)
	}

	// A read-only person is refused every write.
	reader := jwt("bob@example.org", "erasures:read systems:read holds:read", nil)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/erasures", `{"subject":{"user_id":"u-2"}}`},
		{"PUT", "/v1/systems/orders", `{"identifiers":["user_id"]}`},
		{"PUT", "/v1/holds/h-1", `{"subject":{"user_id":"u-2"},"basis":"Art. 17(3)(e)"}`},
		{"POST", "/v1/erasures/" + e.ID + "/cancel", ""},
	} {
		r := s.doRaw(c.method, c.path, c.body, "application/json", "Authorization", "Bearer "+reader)
		if r.Status != http.StatusForbidden || r.ErrorCode() != "insufficient_scope" {
			t.Errorf("%s %s read-only = %d %s, want 403 insufficient_scope", c.method, c.path, r.Status, r.Body)
		}
	}

	// Lethe tokens: a revoked one and an expired one.
	revoked := testenv.Token(t, s.Store, "revoked", auth.AllScopes...)
	if _, err := s.Store.RevokeToken(s.ctx, "revoked", "token:e2e-admin"); err != nil {
		t.Fatal(err)
	}
	expiredTok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.CreateToken(s.ctx, registry.NewToken{Name: "short", Hash: auth.HashToken(expiredTok),
		Scopes: auth.AllScopes, TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	foreignKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(scopeStrings(auth.AllScopes), " ")
	unauthenticated := map[string]string{
		"no header":            apicall.NoHeader,
		"basic scheme":         "Basic YWRtaW46YWRtaW4=",
		"empty bearer":         "Bearer ",
		"garbage":              "Bearer not-a-credential",
		"revoked token":        "Bearer " + revoked,
		"expired token":        "Bearer " + expiredTok,
		"expired jwt":          "Bearer " + jwt("mallory", all, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
		"jwt of a foreign key": "Bearer " + oidctest.Sign(t, jose.SigningKey{Algorithm: jose.RS256, Key: foreignKey}, withScope(s.Issuer.Claims("mallory"), all)),
		"wrong audience":       "Bearer " + jwt("mallory", all, func(c map[string]any) { c["aud"] = "another-service" }),
		"wrong issuer":         "Bearer " + jwt("mallory", all, func(c map[string]any) { c["iss"] = "https://evil.example" }),
		"alg none":             "Bearer " + oidctest.Unsigned(t, s.Issuer.KeyID(), withScope(s.Issuer.Claims("mallory"), all)),
	}

	beforeRows, beforeKafka := tableCounts(t, s), kafkaOffsets(t, s)
	beforeWorkflows := countWorkflowsNow(t, s, "WorkflowType = 'ErasureWorkflow'")
	for _, rc := range routeCases(s) {
		for name, header := range unauthenticated {
			r := s.doRaw(rc.method, rc.path, rc.body, "application/json", "Authorization", header)
			if r.Status != http.StatusUnauthorized || r.ErrorCode() != "unauthenticated" {
				t.Errorf("%s with %s = %d %s, want 401 unauthenticated", rc.pattern, name, r.Status, truncate(r.Body))
			}
		}
		scope := scopeOf(t, s, rc.pattern)
		short := jwt("mallory", strings.Join(scopeStrings(without(auth.AllScopes, scope)), " "), nil)
		r := s.doRaw(rc.method, rc.path, rc.body, "application/json", "Authorization", "Bearer "+short)
		if r.Status != http.StatusForbidden || r.ErrorCode() != "insufficient_scope" {
			t.Errorf("%s with every scope but %s = %d %s, want 403 insufficient_scope", rc.pattern, scope, r.Status, truncate(r.Body))
		}
	}
	if after := tableCounts(t, s); !maps.Equal(after, beforeRows) {
		t.Errorf("refused calls changed PostgreSQL: %v → %v", beforeRows, after)
	}
	if after := kafkaOffsets(t, s); !maps.Equal(after, beforeKafka) {
		t.Errorf("refused calls wrote to Kafka: %v → %v", beforeKafka, after)
	}
	if n := countWorkflowsNow(t, s, "WorkflowType = 'ErasureWorkflow'"); n != beforeWorkflows {
		t.Errorf("refused calls started workflows: %d → %d", beforeWorkflows, n)
	}
}

// scopeOf is the scope the API's route table gives pattern.
func scopeOf(t *testing.T, s *stack, pattern string) auth.Scope {
	t.Helper()
	srv, err := api.New(api.Config{Store: s.Store, Engine: api.NewTemporalEngine(s.Temporal, workflows.Policy{}),
		Topics: roles.Topics{Brokers: s.Brokers, Partitions: 1}, Digester: s.Digester, AuthOff: true})
	if err != nil {
		t.Fatal(err)
	}
	scope, open := srv.RouteScope(pattern)
	if open || scope == "" {
		t.Fatalf("route %s has no scope", pattern)
	}
	return scope
}

func scopeStrings(scopes []auth.Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	return out
}

func without(scopes []auth.Scope, drop auth.Scope) []auth.Scope {
	var out []auth.Scope
	for _, s := range scopes {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func withScope(c map[string]any, scope string) map[string]any {
	c["scope"] = scope
	return c
}

// TestRevocationReachesEveryReplica revokes a token and checks that a
// second API replica, on its own connections, refuses it within a second.
func TestRevocationReachesEveryReplica(t *testing.T) {
	s := newStack(t, stackOptions{})
	second, err := registry.Open(s.ctx, s.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	srv, err := api.New(api.Config{Store: second, Engine: api.NewTemporalEngine(s.Temporal, workflows.Policy{}),
		Topics: roles.Topics{Brokers: s.Brokers, Partitions: 1}, Digester: s.Digester,
		Auth: &auth.Chain{Tokens: auth.NewTokenVerifier(second)}})
	if err != nil {
		t.Fatal(err)
	}
	replica := httptest.NewServer(srv.Handler())
	t.Cleanup(replica.Close)

	tok := testenv.Token(t, s.Store, "support-tool", auth.ErasuresRead)
	get := func(base string) int {
		r, err := apicall.Do(context.Background(), base, "GET", "/v1/erasures", nil, "", "Authorization", "Bearer "+tok)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if a, b := get(s.URL), get(replica.URL); a != http.StatusOK || b != http.StatusOK {
		t.Fatalf("before revocation: replicas answered %d and %d, want 200", a, b)
	}
	if _, err := s.Store.RevokeToken(s.ctx, "support-tool", "token:e2e-admin"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for get(replica.URL) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the second replica still accepts the revoked token a second later")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if get(s.URL) != http.StatusUnauthorized {
		t.Error("the first replica accepts the revoked token")
	}
}

// TestTopicChangeIsAuditedWithItsActor re-points a system's topic on the
// real stack: refused without systems:admin (no topic created, nothing
// stored), then done with it, audited with its actor and the system before
// and after, in a chain that still verifies.
func TestTopicChangeIsAuditedWithItsActor(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	team := s.Issuer.Token(withScope(s.Issuer.Claims("team-orders"), "systems:read systems:write"))
	platform := s.Issuer.Token(withScope(s.Issuer.Claims("platform-admin"), "systems:write systems:admin"))
	body := map[string]any{"identifiers": []string{"user_id"}, "topic": "exfil.orders"}

	rows, offsets := tableCounts(t, s), kafkaOffsets(t, s)
	if r := s.do("PUT", "/v1/systems/orders", body, "Authorization", "Bearer "+team); r.Status != http.StatusForbidden || r.ErrorCode() != "insufficient_scope" {
		t.Fatalf("topic change without systems:admin = %d %s, want 403 insufficient_scope", r.Status, r.Body)
	}
	if after := tableCounts(t, s); !maps.Equal(after, rows) {
		t.Errorf("the refused change wrote to PostgreSQL: %v → %v", rows, after)
	}
	if after := kafkaOffsets(t, s); !maps.Equal(after, offsets) {
		t.Errorf("the refused change created topics: %v → %v", offsets, after)
	}

	// The operator grants Lethe the topics outside its prefix (docs/security.md).
	s.grantLethe("exfil.")
	if r := s.do("PUT", "/v1/systems/orders", body, "Authorization", "Bearer "+platform); r.Status != http.StatusOK {
		t.Fatalf("topic change with systems:admin = %d %s", r.Status, r.Body)
	}
	var actor, detail string
	if err := s.DB.QueryRowContext(s.ctx, `SELECT actor, detail FROM audit_events
		WHERE kind = 'system_topic_changed' AND system = 'orders'`).Scan(&actor, &detail); err != nil {
		t.Fatalf("no system_topic_changed event: %v", err)
	}
	if actor != "platform-admin" || !strings.Contains(detail, `"topic":"lethe.erasure.orders"`) || !strings.Contains(detail, `"topic":"exfil.orders"`) {
		t.Errorf("topic change audited by %q with %s; want the admin, the old and the new topic", actor, detail)
	}
	v, err := s.Store.VerifyAudit(s.ctx)
	if err != nil || !v.Intact() || v.Checked < 2 {
		t.Errorf("lethe audit verify: %+v, %v", v, err)
	}
}
