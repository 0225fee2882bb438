package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// canary is a distinctive identifier value: it must never come back in an
// answer, a log line or what the store is given.
const canary = "canary-7f3a9c@example.invalid"

// TestMalformedRequests sends requests a client could get wrong and checks
// each is refused with the right status and code, changes nothing, starts
// nothing, and never repeats the identifier value it carried.
func TestMalformedRequests(t *testing.T) {
	const validID = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	long := strings.Repeat("x", 1025)
	huge := `{"subject":{"email":"` + strings.Repeat("a", 1<<20) + `"}}`
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantCode   string
	}{
		// Systems.
		{"system bad json", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":`}, 400, "invalid_json"},
		{"system syntax error", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers" ["user_id"]}`}, 400, "invalid_json"},
		{"system unknown field", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"colour":"red"}`}, 400, "unknown_field"},
		{"system name upper case", req{method: "PUT", path: "/v1/systems/Orders", body: `{"identifiers":["user_id"]}`}, 400, "invalid_name"},
		{"system name too long", req{method: "PUT", path: "/v1/systems/" + strings.Repeat("a", 64), body: `{"identifiers":["user_id"]}`}, 400, "invalid_name"},
		{"system name starts with digit", req{method: "PUT", path: "/v1/systems/1orders", body: `{"identifiers":["user_id"]}`}, 400, "invalid_name"},
		{"system no identifiers", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":[]}`}, 400, "invalid_identifiers"},
		{"system missing identifiers", req{method: "PUT", path: "/v1/systems/orders", body: `{"owner":"x"}`}, 400, "invalid_identifiers"},
		{"system bad identifier type", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["User-ID"]}`}, 400, "invalid_identifier_type"},
		{"system bad produces type", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"produces":["x y"]}`}, 400, "invalid_identifier_type"},
		{"system identifiers not strings", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":[1]}`}, 400, "invalid_json"},
		{"system bad duration", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"confirm_within":"3 days"}`}, 400, "invalid_duration"},
		{"system duration too short", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"confirm_within":"59s"}`}, 400, "invalid_duration"},
		{"system duration too long", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"confirm_within":"8761h"}`}, 400, "invalid_duration"},
		{"system duration negative", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"confirm_within":"-72h"}`}, 400, "invalid_duration"},
		{"system topic with space", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"topic":"bad topic"}`}, 400, "invalid_topic"},
		{"system topic dot dot", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"topic":".."}`}, 400, "invalid_topic"},
		{"system topic too long", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"topic":"` + strings.Repeat("t", 246) + `"}`}, 400, "invalid_topic"},
		{"system topic is confirmations", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"topic":"lethe.erasure.confirmations"}`}, 400, "invalid_topic"},
		{"system default topic is confirmations", req{method: "PUT", path: "/v1/systems/confirmations", body: `{"identifiers":["user_id"]}`}, 400, "invalid_topic"},
		{"system topic is a dlq", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"topic":"orders.dlq"}`}, 400, "invalid_topic"},
		{"system owner too long", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"owner":"` + strings.Repeat("é", 1025) + `"}`}, 400, "field_too_long"},
		{"system wrong content type", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"]}`, ctype: "text/plain"}, 415, "unsupported_media_type"},
		{"system missing content type", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"]}`, ctype: "-"}, 415, "unsupported_media_type"},
		{"system oversized body", req{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"],"description":"` + strings.Repeat("d", 1<<20) + `"}`}, 413, "body_too_large"},
		{"get system bad name", req{method: "GET", path: "/v1/systems/NOPE"}, 400, "invalid_name"},
		{"get unknown system", req{method: "GET", path: "/v1/systems/nope"}, 404, "system_not_found"},
		{"delete unknown system", req{method: "DELETE", path: "/v1/systems/nope"}, 404, "system_not_found"},

		// Erasure requests.
		{"erasure bad json", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"`}, 400, "invalid_json"},
		{"erasure invalid json token", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":` + canary + `}}`}, 400, "invalid_json"},
		{"erasure empty body", req{method: "POST", path: "/v1/erasures", body: " "}, 400, "invalid_json"},
		{"erasure array body", req{method: "POST", path: "/v1/erasures", body: `["` + canary + `"]`}, 400, "invalid_json"},
		{"erasure trailing data", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}} {"x":1}`}, 400, "invalid_json"},
		{"erasure trailing brace", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}}`}, 400, "invalid_json"},
		{"erasure unknown field", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"},"priority":1}`}, 400, "unknown_field"},
		{"erasure value as unknown field", req{method: "POST", path: "/v1/erasures", body: `{"` + canary + `":"email"}`}, 400, "unknown_field"},
		{"erasure missing subject", req{method: "POST", path: "/v1/erasures", body: `{"reason":"gdpr_art17"}`}, 400, "invalid_subject"},
		{"erasure empty subject", req{method: "POST", path: "/v1/erasures", body: `{"subject":{}}`}, 400, "invalid_subject"},
		{"erasure null subject", req{method: "POST", path: "/v1/erasures", body: `{"subject":null}`}, 400, "invalid_subject"},
		{"erasure empty value", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"","user_id":"` + canary + `"}}`}, 400, "invalid_subject"},
		{"erasure number value", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":12345}}`}, 400, "invalid_subject"},
		{"erasure object value", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":{"v":"` + canary + `"}}}`}, 400, "invalid_subject"},
		{"erasure subject is a list", req{method: "POST", path: "/v1/erasures", body: `{"subject":["` + canary + `"]}`}, 400, "invalid_subject"},
		{"erasure bad identifier type", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"E-Mail":"` + canary + `"}}`}, 400, "invalid_subject"},
		{"erasure value as type", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"` + canary + `":"email"}}`}, 400, "invalid_subject"},
		{"erasure value too long", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + long + `"}}`}, 400, "invalid_subject"},
		{"erasure dry_run not bool", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"},"dry_run":"yes"}`}, 400, "invalid_json"},
		{"erasure reason too long", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"},"reason":"` + strings.Repeat("r", 257) + `"}`}, 400, "field_too_long"},
		{"erasure requested_by too long", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"},"requested_by":"` + strings.Repeat("r", 257) + `"}`}, 400, "field_too_long"},
		{"erasure wrong content type", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, ctype: "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"erasure wrong charset", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, ctype: "application/json; charset=latin1"}, 415, "unsupported_media_type"},
		{"erasure missing content type", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, ctype: "-"}, 415, "unsupported_media_type"},
		{"erasure oversized body", req{method: "POST", path: "/v1/erasures", body: huge}, 413, "body_too_large"},
		{"erasure oversized trailing data", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}` + strings.Repeat(" ", 1<<20)}, 413, "body_too_large"},
		{"erasure empty idempotency key", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, headers: map[string]string{"Idempotency-Key": ""}}, 400, "invalid_idempotency_key"},
		{"erasure idempotency key too long", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, headers: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}}, 400, "invalid_idempotency_key"},
		{"erasure idempotency key not ascii", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, headers: map[string]string{"Idempotency-Key": "clé"}}, 400, "invalid_idempotency_key"},
		{"erasure idempotency key control char", req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`, headers: map[string]string{"Idempotency-Key": "a\tb"}}, 400, "invalid_idempotency_key"},
		{"list bad cursor", req{method: "GET", path: "/v1/erasures?cursor=%21%21"}, 400, "invalid_cursor"},
		{"list limit zero", req{method: "GET", path: "/v1/erasures?limit=0"}, 400, "invalid_limit"},
		{"list limit too big", req{method: "GET", path: "/v1/erasures?limit=201"}, 400, "invalid_limit"},
		{"list limit not a number", req{method: "GET", path: "/v1/erasures?limit=ten"}, 400, "invalid_limit"},
		{"list limit empty", req{method: "GET", path: "/v1/erasures?limit="}, 400, "invalid_limit"},
		{"list unknown status", req{method: "GET", path: "/v1/erasures?status=done"}, 400, "invalid_status"},
		{"suppressions since not a time", req{method: "GET", path: "/v1/suppressions?since=yesterday"}, 400, "invalid_since"},
		{"suppressions since empty", req{method: "GET", path: "/v1/suppressions?since="}, 400, "invalid_since"},
		{"suppressions since with a raw plus", req{method: "GET", path: "/v1/suppressions?since=2026-11-25T10:00:00+01:00"}, 400, "invalid_since"},
		{"suppressions since a date only", req{method: "GET", path: "/v1/suppressions?since=2026-11-25"}, 400, "invalid_since"},
		{"suppressions since holding a value", req{method: "GET", path: "/v1/suppressions?since=" + canary}, 400, "invalid_since"},
		{"suppressions bad type", req{method: "GET", path: "/v1/suppressions?type=E-Mail"}, 400, "invalid_type"},
		{"suppressions value as type", req{method: "GET", path: "/v1/suppressions?type=" + canary}, 400, "invalid_type"},
		{"suppressions limit zero", req{method: "GET", path: "/v1/suppressions?limit=0"}, 400, "invalid_limit"},
		{"suppressions limit too big", req{method: "GET", path: "/v1/suppressions?limit=1001"}, 400, "invalid_limit"},
		{"suppressions limit not a number", req{method: "GET", path: "/v1/suppressions?limit=all"}, 400, "invalid_limit"},
		{"suppressions bad cursor", req{method: "GET", path: "/v1/suppressions?cursor=%21%21"}, 400, "invalid_cursor"},
		{"wrong method on suppressions", req{method: "POST", path: "/v1/suppressions", body: `{}`}, 405, "method_not_allowed"},
		{"get unknown erasure", req{method: "GET", path: "/v1/erasures/" + validID}, 404, "erasure_not_found"},
		{"get erasure not a uuid", req{method: "GET", path: "/v1/erasures/" + canary}, 404, "erasure_not_found"},
		{"cancel unknown erasure", req{method: "POST", path: "/v1/erasures/" + validID + "/cancel"}, 404, "erasure_not_found"},
		{"cancel erasure not a uuid", req{method: "POST", path: "/v1/erasures/nope/cancel"}, 404, "erasure_not_found"},

		// Routing.
		{"unknown route", req{method: "GET", path: "/v1/nope"}, 404, "route_not_found"},
		{"root", req{method: "GET", path: "/"}, 404, "route_not_found"},
		{"trailing slash", req{method: "GET", path: "/v1/systems/"}, 404, "route_not_found"},
		{"escaped slash in name", req{method: "GET", path: "/v1/systems/a%2Fb"}, 400, "invalid_name"},
		{"unknown route with query", req{method: "GET", path: "/v2/erasures?email=" + canary}, 404, "route_not_found"},
		{"wrong method on systems", req{method: "POST", path: "/v1/systems", body: `{}`}, 405, "method_not_allowed"},
		{"wrong method on a system", req{method: "PATCH", path: "/v1/systems/orders", body: `{}`}, 405, "method_not_allowed"},
		{"wrong method on erasures", req{method: "DELETE", path: "/v1/erasures"}, 405, "method_not_allowed"},
		{"wrong method on cancel", req{method: "GET", path: "/v1/erasures/" + validID + "/cancel"}, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.do(t, tt.req)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %s, want %d", describe(res), tt.wantStatus)
			}
			if got := res.errorCode(t); got != tt.wantCode {
				t.Errorf("code = %q, want %q (body %s)", got, tt.wantCode, res.body)
			}
			if n := h.store.writeCount(); n != 0 {
				t.Errorf("store recorded %d writes, want none", n)
			}
			if starts, cancels := h.engine.counts(); starts != 0 || cancels != 0 {
				t.Errorf("engine got %d starts and %d cancels, want none", starts, cancels)
			}
			if n := h.topics.count(); n != 0 {
				t.Errorf("%d topics were created, want none", n)
			}
			if strings.Contains(string(res.body), canary) {
				t.Errorf("answer repeats the identifier value: %s", res.body)
			}
			if strings.Contains(h.logs.String(), canary) {
				t.Errorf("log repeats the identifier value: %s", h.logs.String())
			}
			if tt.wantStatus == http.StatusMethodNotAllowed && res.header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
	if len(tests) < 20 {
		t.Fatalf("only %d malformed cases", len(tests))
	}
}
