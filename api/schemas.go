package api

import (
	"net/http"
	"strings"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/schemas"
)

// getSchema serves the JSON Schema of a wire message
// (GET /v1/schemas/{name}.json), so that a connector written in any
// language can validate what it reads and writes against the contract.
// It is open, like the OpenAPI document: a schema holds no data.
func (s *Server) getSchema(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("name"), ".json")
	doc, found := schemas.Get(name)
	if !ok || !found {
		s.writeError(w, r, lethe.Errorf(lethe.KindNotFound, "schema_not_found",
			"no such schema; the schemas are %s", strings.Join(schemas.Names(), ", ")))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/schema+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}
