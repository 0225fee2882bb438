package api

import (
	"context"
	_ "embed"
	"net/http"
	"time"

	"github.com/lethe-dev/lethe"
)

// openAPIDoc is the OpenAPI 3 description of this API, served at
// GET /v1/openapi.json. It is written by hand and kept honest by a test that
// compares its paths with the routes the mux serves.
//
//go:embed openapi.json
var openAPIDoc []byte

// readyTimeout bounds a readiness check, so a hung dependency shows up as
// not ready instead of as a probe timeout.
const readyTimeout = 5 * time.Second

type statusBody struct {
	Status string `json:"status"`
}

// healthz says only that the process serves HTTP; dependencies are readyz's.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

// readyz says whether the API can do its work now: the database answers and
// any extra check from Config.Ready passes. Every failure answers 503, even
// one nobody classified, because a probe only needs to know "not now".
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	err := s.store.Ping(ctx)
	if err == nil && s.ready != nil {
		err = s.ready(ctx)
	}
	if err != nil {
		if lethe.ErrorKind(err) != lethe.KindUnavailable {
			err = joinKind(lethe.Errorf(lethe.KindUnavailable, "not_ready", "a dependency is not ready"), err)
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDoc)
}
