package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Security   []map[string][]string                 `json:"security"`
	Paths      map[string]map[string]openAPIOp       `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type openAPIOp struct {
	OperationID string                     `json:"operationId"`
	Responses   map[string]json.RawMessage `json:"responses"`
	// Security is nil when the operation inherits the global requirement,
	// and empty when it is open.
	Security *[]map[string][]string `json:"security"`
	Scope    string                 `json:"x-lethe-scope"`
}

func fetchOpenAPI(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	h := newHarness(t)
	res := h.do(t, req{method: "GET", path: "/v1/openapi.json"})
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json = %d %q", res.status, res.header.Get("Content-Type"))
	}
	var doc openAPIDoc
	res.decode(t, &doc)
	return doc, res.body
}

// TestOpenAPIMatchesRoutes checks that every route the mux serves is
// documented and every documented operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := fetchOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routed := newHarness(t).server.Routes()
	slices.Sort(documented)
	slices.Sort(routed)
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not documented", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("documented %s is not routed", d)
		}
	}
}

// TestOpenAPIIsComplete checks what a client generator relies on: unique
// operation ids, error answers described with the Error schema, and no
// dangling $ref.
func TestOpenAPIIsComplete(t *testing.T) {
	doc, raw := fetchOpenAPI(t)
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			name := strings.ToUpper(method) + " " + path
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: missing or repeated operationId %q", name, op.OperationID)
			}
			ids[op.OperationID] = true
			hasSuccess := false
			for code, resp := range op.Responses {
				if code[0] == '2' {
					hasSuccess = true
					continue
				}
				if !strings.Contains(string(resp), "#/components/") {
					t.Errorf("%s: response %s describes no schema", name, code)
				}
			}
			if !hasSuccess {
				t.Errorf("%s: no success response", name)
			}
			for _, code := range []string{"405", "500"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: response %s is not documented", name, code)
				}
			}
		}
	}

	var all any
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k != "$ref" {
					walk(x)
					continue
				}
				ref, _ := x.(string)
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				if len(parts) != 2 || !strings.HasPrefix(ref, "#/components/") {
					t.Errorf("unexpected $ref %q", ref)
					continue
				}
				if _, ok := doc.Components[parts[0]][parts[1]]; !ok {
					t.Errorf("dangling $ref %q", ref)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(all)
}

// TestOpenAPISecurity is the check Redocly's security-defined rule makes,
// and more: a global bearer requirement whose scheme is defined, open
// operations exactly where the router serves without a credential, and on
// every other operation the router's own scope and the 401, 403 and 429
// answers.
func TestOpenAPISecurity(t *testing.T) {
	doc, _ := fetchOpenAPI(t)
	server := newHarness(t).server
	schemes := doc.Components["securitySchemes"]
	if len(doc.Security) != 1 || len(schemes) == 0 {
		t.Fatalf("global security = %v, schemes = %v; want one requirement of a defined scheme", doc.Security, schemes)
	}
	for name := range doc.Security[0] {
		if _, ok := schemes[name]; !ok {
			t.Errorf("global security names %q, which securitySchemes does not define", name)
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			pattern := strings.ToUpper(method) + " " + path
			scope, open := server.RouteScope(pattern)
			switch {
			case open:
				if op.Security == nil || len(*op.Security) != 0 {
					t.Errorf("%s is served without a credential but does not say security: []", pattern)
				}
				if op.Scope != "" {
					t.Errorf("%s is open but documents scope %q", pattern, op.Scope)
				}
			default:
				if op.Security != nil {
					t.Errorf("%s overrides the global security requirement", pattern)
				}
				if op.Scope != string(scope) {
					t.Errorf("%s documents x-lethe-scope %q, the router needs %q", pattern, op.Scope, scope)
				}
				for _, code := range []string{"401", "403", "429"} {
					if _, ok := op.Responses[code]; !ok {
						t.Errorf("%s does not document its %s answer", pattern, code)
					}
				}
			}
		}
	}
}
