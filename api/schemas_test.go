package api_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/lethe-dev/lethe/schemas"
)

// TestGetSchema serves every wire schema, open, as the repository holds
// it, and names the schemas when asked for another.
func TestGetSchema(t *testing.T) {
	h := newHarness(t)
	names := schemas.Names()
	if len(names) != 4 {
		t.Fatalf("schemas = %v, want the four wire messages", names)
	}
	for _, name := range names {
		res := h.do(t, req{method: "GET", path: "/v1/schemas/" + name + ".json", headers: map[string]string{"Authorization": "-"}})
		want, _ := schemas.Get(name)
		if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/schema+json" || string(res.body) != string(want) {
			t.Errorf("GET %s = %s", name, describe(res))
		}
		var doc map[string]any
		if err := json.Unmarshal(res.body, &doc); err != nil || doc["$schema"] == nil {
			t.Errorf("%s is not a JSON Schema: %v", name, err)
		}
	}
	for _, path := range []string{"/v1/schemas/erasure.command.v1", "/v1/schemas/nope.json", "/v1/schemas/..%2Fapi.go.json"} {
		res := h.do(t, req{method: "GET", path: path})
		if res.status != http.StatusNotFound || res.errorCode(t) != "schema_not_found" {
			t.Errorf("GET %s = %s, want 404 schema_not_found", path, describe(res))
		}
	}
}
