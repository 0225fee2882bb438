package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/digest"
)

// TestCanaryNeverLeaves follows one distinctive identifier value through
// every endpoint that could echo it and checks that it appears in no
// answer, no log line and nothing handed to the store.
func TestCanaryNeverLeaves(t *testing.T) {
	h := newHarness(t)
	var bodies []string
	record := func(r response) response {
		bodies = append(bodies, string(r.body))
		return r
	}
	body := `{"subject":{"email":"` + canary + `","user_id":"u-1"},"reason":"gdpr_art17"}`
	key := map[string]string{"Idempotency-Key": "k-1"}

	first := record(h.do(t, req{method: "POST", path: "/v1/erasures", body: body, headers: key}))
	if first.status != http.StatusAccepted {
		t.Fatalf("POST = %s", describe(first))
	}
	var e lethe.Erasure
	first.decode(t, &e)
	record(h.do(t, req{method: "POST", path: "/v1/erasures", body: body, headers: key}))
	record(h.do(t, req{method: "POST", path: "/v1/erasures", headers: key,
		body: `{"subject":{"email":"` + canary + `"}}`}))
	record(h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `","phone":""}}`}))
	record(h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"` + canary + `":"email"}}`}))
	record(h.do(t, req{method: "GET", path: "/v1/erasures/" + e.ID}))
	record(h.do(t, req{method: "GET", path: "/v1/erasures"}))
	h.engine.onCancel = func(id string) error {
		h.store.setStatus(id, lethe.RequestCanceled)
		return nil
	}
	record(h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"}))

	for i, b := range bodies {
		if strings.Contains(b, canary) {
			t.Errorf("answer %d contains the identifier value: %s", i, b)
		}
	}
	logs := h.logs.String()
	if logs == "" {
		t.Fatal("nothing was logged; the check below would prove nothing")
	}
	if strings.Contains(logs, canary) {
		t.Errorf("log contains the identifier value:\n%s", logs)
	}
	for _, in := range h.store.created {
		if s := fmt.Sprintf("%+v", in); strings.Contains(s, canary) {
			t.Errorf("store was given the identifier value: %s", s)
		}
	}
	// The workflow does need the value: it builds the commands.
	if len(h.engine.starts) != 1 || h.engine.starts[0].Subject[0].Value != canary {
		t.Errorf("workflow input lacks the value it needs: %+v", h.engine.starts)
	}
}

// TestRequestLog checks the one line per request: method, route pattern,
// status and duration, and neither the path's values nor the query.
func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	h.do(t, req{method: "GET", path: "/v1/systems/orders?secret=" + canary})
	h.do(t, req{method: "GET", path: "/nowhere"})

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("got %d request lines, want 2:\n%s", len(lines), h.logs.String())
	}
	want := []struct {
		route  string
		status float64
	}{{"GET /v1/systems/{name}", 404}, {"unmatched", 404}}
	for i, l := range lines {
		if l["method"] != "GET" || l["route"] != want[i].route || l["status"] != want[i].status {
			t.Errorf("line %d = %v, want GET %s %v", i, l, want[i].route, want[i].status)
		}
		if _, ok := l["duration"]; !ok {
			t.Errorf("line %d has no duration: %v", i, l)
		}
	}
	if strings.Contains(h.logs.String(), "orders") || strings.Contains(h.logs.String(), canary) {
		t.Errorf("log contains the path or query:\n%s", h.logs.String())
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, req{method: "GET", path: "/healthz"})
	if res.status != http.StatusOK || string(res.body) != "{\"status\":\"ok\"}\n" {
		t.Fatalf("healthz = %s", describe(res))
	}
	res = h.do(t, req{method: "GET", path: "/readyz"})
	if res.status != http.StatusOK || string(res.body) != "{\"status\":\"ok\"}\n" {
		t.Fatalf("readyz = %s", describe(res))
	}

	h.store.pingErr = lethe.Errorf(lethe.KindUnavailable, "database_unavailable", "the database is unavailable")
	res = h.do(t, req{method: "GET", path: "/readyz"})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "database_unavailable" {
		t.Fatalf("readyz with the database down = %s, want 503 database_unavailable", describe(res))
	}
	res = h.do(t, req{method: "GET", path: "/healthz"})
	if res.status != http.StatusOK {
		t.Fatalf("healthz with the database down = %s, want 200", describe(res))
	}
}

func TestReadinessExtraCheck(t *testing.T) {
	d, err := digest.New(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	srv, err := api.New(api.Config{
		Store: newFakeStore(testNow), Engine: &fakeEngine{}, Topics: &fakeTopics{}, Digester: d, Auth: testCredentials,
		Ready: func(ctx context.Context) error {
			calls++
			if _, ok := ctx.Deadline(); !ok {
				t.Error("readiness check runs without a deadline")
			}
			return errors.New("kafka: no brokers")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{handler: srv.Handler()}
	res := h.do(t, req{method: "GET", path: "/readyz"})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "not_ready" {
		t.Fatalf("readyz with a failing check = %s, want 503 not_ready", describe(res))
	}
	if calls != 1 {
		t.Errorf("extra check ran %d times, want 1", calls)
	}
	if strings.Contains(string(res.body), "brokers") {
		t.Errorf("answer leaks the cause: %s", res.body)
	}
}

func TestConfigValidate(t *testing.T) {
	d, err := digest.New(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	full := api.Config{Store: newFakeStore(testNow), Engine: &fakeEngine{}, Topics: &fakeTopics{}, Digester: d, Auth: testCredentials}
	if err := full.Validate(); err != nil {
		t.Fatalf("complete config: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*api.Config)
	}{
		{"no store", func(c *api.Config) { c.Store = nil }},
		{"no engine", func(c *api.Config) { c.Engine = nil }},
		{"no topics", func(c *api.Config) { c.Topics = nil }},
		{"no digester", func(c *api.Config) { c.Digester = nil }},
		{"negative deadline", func(c *api.Config) { c.DefaultDeadline = -1 }},
		{"no authentication", func(c *api.Config) { c.Auth = nil }},
		{"authentication and AuthOff", func(c *api.Config) { c.AuthOff = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := full
			tt.modify(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
			if _, err := api.New(c); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
