package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
)

// A request moves lethe_http_request_duration_seconds under its route
// pattern and status code, never under its path, which holds the id.
func TestRequestDurationByRoutePattern(t *testing.T) {
	m := metrics.New()
	h := newHarnessWith(t, func(c *api.Config) { c.Requests = m })
	id := uuid.NewString()
	if res := h.do(t, req{method: http.MethodGet, path: "/v1/erasures/" + id}); res.status != http.StatusNotFound {
		t.Fatalf("GET /v1/erasures/%s = %d, want 404", id, res.status)
	}
	h.do(t, req{method: http.MethodGet, path: "/v1/erasures/" + id})
	if res := h.do(t, req{method: http.MethodGet, path: "/no/such/" + id}); res.status != http.StatusNotFound {
		t.Fatalf("GET /no/such/… = %d, want 404", res.status)
	}

	f := metricstest.Scrape(t, m.Handler())
	const fam = "lethe_http_request_duration_seconds"
	if got, _ := f.Value(fam, "route", "GET /v1/erasures/{id}", "code", "404"); got != 2 {
		t.Errorf("%s{route=GET /v1/erasures/{id},code=404} count = %v, want 2", fam, got)
	}
	if got, _ := f.Value(fam, "route", "unmatched", "code", "404"); got != 1 {
		t.Errorf("%s{route=unmatched,code=404} count = %v, want 1", fam, got)
	}
	for _, route := range f.LabelValues(fam, "route") {
		if strings.Contains(route, id) {
			t.Errorf("route label %q holds the request id", route)
		}
	}
}
