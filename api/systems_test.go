package api_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

func TestPutSystemCreatesWithDefaultsThenReplaces(t *testing.T) {
	h := newHarness(t)

	res := h.putSystem(t, "orders", `{"identifiers":["user_id","email","user_id"]}`)
	if res.status != http.StatusCreated {
		t.Fatalf("first PUT = %s, want 201", describe(res))
	}
	if got := res.header.Get("Location"); got != "/v1/systems/orders" {
		t.Errorf("Location = %q, want /v1/systems/orders", got)
	}
	var sys map[string]any
	res.decode(t, &sys)
	want := map[string]any{
		"name":           "orders",
		"identifiers":    []any{"email", "user_id"},
		"produces":       []any{},
		"topic":          "lethe.erasure.orders",
		"owner":          "",
		"description":    "",
		"confirm_within": "72h",
	}
	for k, v := range want {
		if got := mustJSON(t, sys[k]); got != mustJSON(t, v) {
			t.Errorf("%s = %s, want %s", k, got, mustJSON(t, v))
		}
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if _, ok := sys[k]; !ok {
			t.Errorf("answer lacks %s: %s", k, res.body)
		}
	}
	if want := []string{"lethe.erasure.orders", "lethe.erasure.orders.dlq"}; !slices.Equal(h.topics.ensured, want) {
		t.Errorf("ensured topics %v, want %v", h.topics.ensured, want)
	}

	res = h.putSystem(t, "orders", `{
		"identifiers": ["user_id"],
		"produces": ["stripe_customer_id", "stripe_customer_id"],
		"topic": "team.orders.erasure",
		"owner": "team-orders",
		"description": "orders and invoices",
		"confirm_within": "90m"
	}`)
	if res.status != http.StatusOK {
		t.Fatalf("second PUT = %s, want 200", describe(res))
	}
	var got lethe.System
	res.decode(t, &got)
	if got.Topic != "team.orders.erasure" || got.Owner != "team-orders" || got.Description != "orders and invoices" {
		t.Errorf("replaced system = %+v", got)
	}
	if time.Duration(got.ConfirmWithin) != 90*time.Minute {
		t.Errorf("confirm_within = %v, want 90m", got.ConfirmWithin)
	}
	if !slices.Equal(got.Produces, []string{"stripe_customer_id"}) {
		t.Errorf("produces = %v, want deduplicated [stripe_customer_id]", got.Produces)
	}
	stored := h.store.systems["orders"]
	if stored.Topic != "team.orders.erasure" || !slices.Equal(stored.Identifiers, []string{"user_id"}) {
		t.Errorf("store holds %+v", stored)
	}
	if !slices.Contains(h.topics.ensured, "team.orders.erasure.dlq") {
		t.Errorf("dead-letter topic of the new topic not ensured: %v", h.topics.ensured)
	}
}

func TestPutSystemAcceptsBoundsAndCharset(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, req{method: "PUT", path: "/v1/systems/a", ctype: "application/json; charset=UTF-8",
		body: `{"identifiers":["x"],"confirm_within":"1m"}`})
	if res.status != http.StatusCreated {
		t.Fatalf("PUT with charset and 1m = %s, want 201", describe(res))
	}
	res = h.putSystem(t, "b_2-x", `{"identifiers":["x"],"confirm_within":"8760h"}`)
	if res.status != http.StatusCreated {
		t.Fatalf("PUT with 8760h = %s, want 201", describe(res))
	}
}

func TestPutSystemKafkaDownStoresNothing(t *testing.T) {
	h := newHarness(t)
	h.topics.err = errors.New("dial tcp 127.0.0.1:9092: connection refused")
	res := h.putSystem(t, "orders", `{"identifiers":["user_id"]}`)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("PUT with Kafka down = %s, want 503", describe(res))
	}
	if code := res.errorCode(t); code != "kafka_unavailable" {
		t.Errorf("code = %q, want kafka_unavailable", code)
	}
	if n := h.store.writeCount(); n != 0 {
		t.Errorf("store recorded %d writes, want none", n)
	}
}

func TestGetListDeleteSystem(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{"orders", "billing"} {
		if res := h.putSystem(t, name, `{"identifiers":["user_id"]}`); res.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", name, describe(res))
		}
	}

	res := h.do(t, req{method: "GET", path: "/v1/systems/orders"})
	if res.status != http.StatusOK {
		t.Fatalf("GET = %s, want 200", describe(res))
	}
	var sys lethe.System
	res.decode(t, &sys)
	if sys.Name != "orders" || sys.Topic != "lethe.erasure.orders" {
		t.Errorf("GET answered %+v", sys)
	}

	res = h.do(t, req{method: "GET", path: "/v1/systems"})
	var list struct {
		Items []lethe.System `json:"items"`
	}
	res.decode(t, &list)
	if res.status != http.StatusOK || len(list.Items) != 2 || list.Items[0].Name != "billing" {
		t.Fatalf("list = %s, want billing and orders", describe(res))
	}

	res = h.do(t, req{method: "DELETE", path: "/v1/systems/orders"})
	if res.status != http.StatusNoContent || len(res.body) != 0 {
		t.Fatalf("DELETE = %s, want 204 with no body", describe(res))
	}
	res = h.do(t, req{method: "GET", path: "/v1/systems/orders"})
	if res.status != http.StatusNotFound || res.errorCode(t) != "system_not_found" {
		t.Fatalf("GET after DELETE = %s, want 404 system_not_found", describe(res))
	}
	res = h.do(t, req{method: "GET", path: "/v1/systems"})
	res.decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "billing" {
		t.Errorf("list after DELETE = %s, want billing only", res.body)
	}
}

func TestListSystemsEmptyIsAnArray(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, req{method: "GET", path: "/v1/systems"})
	if res.status != http.StatusOK || string(res.body) != "{\"items\":[]}\n" {
		t.Fatalf("empty list = %s, want {\"items\":[]}", describe(res))
	}
}
