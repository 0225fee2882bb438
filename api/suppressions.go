package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// suppressionList is the body of GET /v1/suppressions.
type suppressionList struct {
	Items []lethe.Suppression `json:"items"`
	// NextCursor, unlike GET /v1/erasures', is given on the last page too:
	// it is where a client comes back later for what has been erased since.
	NextCursor string `json:"next_cursor,omitempty"`
	HasMore    bool   `json:"has_more"`
}

// listSuppressions serves the suppression list: the keyed digests of the
// subjects of finished erasures, for services that restore a backup to
// erase again. Digests only: no value is stored, so none can be answered.
func (s *Server) listSuppressions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := registry.SuppressionFilter{
		Type:   q.Get("type"),
		Limit:  registry.DefaultSuppressionLimit,
		Cursor: q.Get("cursor"),
	}
	if q.Has("since") {
		since, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			s.writeError(w, r, invalid("invalid_since",
				"since must be an RFC 3339 time such as 2026-11-25T10:00:00Z (a + in an offset is written %%2B)"))
			return
		}
		f.Since = since
	}
	if f.Type != "" && !lethe.ValidIdentifierType(f.Type) {
		s.writeError(w, r, invalid("invalid_type", "type must be an identifier type matching ^[a-z][a-z0-9_]{0,62}$"))
		return
	}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > registry.MaxSuppressionLimit {
			s.writeError(w, r, invalid("invalid_limit", "limit must be an integer from 1 to %d", registry.MaxSuppressionLimit))
			return
		}
		f.Limit = n
	}
	page, err := s.store.ListSuppressions(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := suppressionList{Items: page.Items, NextCursor: page.NextCursor, HasMore: page.More}
	if out.Items == nil {
		out.Items = []lethe.Suppression{}
	}
	writeJSON(w, http.StatusOK, out)
}
