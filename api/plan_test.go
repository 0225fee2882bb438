package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe"
)

func TestPutSystemAfterIsCheckedAndSorted(t *testing.T) {
	h := newHarness(t)
	res := h.putSystem(t, "b", `{"identifiers":["email"],"after":["c","a","c"]}`)
	if res.status != http.StatusCreated {
		t.Fatalf("PUT with after = %s, want 201", describe(res))
	}
	var got lethe.System
	res.decode(t, &got)
	if !slices.Equal(got.After, []string{"a", "c"}) {
		t.Errorf("after = %v, want [a c], sorted and deduplicated", got.After)
	}
	res = h.putSystem(t, "d", `{"identifiers":["email"]}`)
	if !strings.Contains(string(res.body), `"after":[]`) {
		t.Errorf("a system with no after answers %s, want \"after\":[]", res.body)
	}
	writes := h.store.writes
	for _, body := range []string{
		`{"identifiers":["email"],"after":["Not A Name"]}`,
		`{"identifiers":["email"],"after":"a"}`,
		`{"identifiers":["email"],"after":[` + strings.Repeat(`"a",`, lethe.MaxAfter) + `"b"]}`,
	} {
		res := h.putSystem(t, "e", body)
		if res.status != http.StatusBadRequest {
			t.Errorf("PUT %s = %s, want 400", body, describe(res))
		}
	}
	if h.store.writes != writes {
		t.Errorf("refused PUTs wrote to the store")
	}
}

func TestPlanErasure(t *testing.T) {
	h := newHarness(t)
	for name, body := range map[string]string{
		"a":        `{"identifiers":["email"]}`,
		"b":        `{"identifiers":["email"],"after":["a"]}`,
		"c":        `{"identifiers":["user_id"],"after":["b"]}`,
		"accounts": `{"identifiers":["email"],"produces":["account_id"]}`,
		"billing":  `{"identifiers":["account_id"]}`,
		"phone":    `{"identifiers":["phone"]}`,
	} {
		if res := h.putSystem(t, name, body); res.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", name, describe(res))
		}
	}
	writes := h.store.writes
	res := h.do(t, req{method: "POST", path: "/v1/erasures/plan",
		body: `{"subject":{"email":"ada@example.com","user_id":"u-1"}}`})
	if res.status != http.StatusOK {
		t.Fatalf("plan = %s, want 200", describe(res))
	}
	if strings.Contains(string(res.body), "ada@example.com") || strings.Contains(string(res.body), "u-1") {
		t.Errorf("the plan shows an identifier value: %s", res.body)
	}
	var plan lethe.ErasurePlan
	res.decode(t, &plan)
	want := [][]string{{"a", "accounts"}, {"b", "billing"}, {"c"}}
	if mustJSON(t, plan.Waves) != mustJSON(t, want) {
		t.Errorf("waves = %v, want %v", plan.Waves, want)
	}
	if len(h.store.planDigests) != 2 || h.store.planDigests[0].Type != "email" ||
		strings.Contains(h.store.planDigests[0].Digest, "ada") {
		t.Errorf("the store was given %+v, want the two keyed digests", h.store.planDigests)
	}
	if h.store.writes != writes || len(h.engine.starts) != 0 {
		t.Errorf("a plan wrote to the store or started a workflow")
	}

	res = h.do(t, req{method: "POST", path: "/v1/erasures/plan", body: `{"identifier_types":["user_id","user_id"]}`})
	res.decode(t, &plan)
	if mustJSON(t, plan.Waves) != mustJSON(t, [][]string{{"c"}}) {
		t.Errorf("waves by types = %v, want [[c]]: b is not targeted, so c waits for no one", plan.Waves)
	}

	for _, body := range []string{
		`{}`,
		`{"subject":{}}`,
		`{"subject":{"email":""}}`,
		`{"identifier_types":["Email"]}`,
		`{"subject":{"email":"x"},"identifier_types":["email"]}`,
		`{"identifier_types":["email"],"extra":1}`,
	} {
		res := h.do(t, req{method: "POST", path: "/v1/erasures/plan", body: body})
		if res.status != http.StatusBadRequest || res.errorCode(t) == "" {
			t.Errorf("plan %s = %s, want 400 with a code", body, describe(res))
		}
	}
}
