package api

import (
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// holdRequest is the body of PUT /v1/holds/{id}. The subject's values are
// digested at once, like an erasure request's, and never kept.
type holdRequest struct {
	Subject map[string]string `json:"subject"`
	// System is the one system held; absent holds all.
	System    string     `json:"system"`
	Basis     string     `json:"basis"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// holdList is the body of GET /v1/holds.
type holdList struct {
	Items []lethe.Hold `json:"items"`
}

func (s *Server) putHold(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !lethe.ValidHoldID(id) {
		s.writeError(w, r, invalid("invalid_hold_id", "a hold id must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"))
		return
	}
	var req holdRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := validSubject(req.Subject); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.now()) {
		s.writeError(w, r, invalid("invalid_expiry", "expires_at must be in the future"))
		return
	}
	in := registry.NewHold{ID: id, System: req.System, Basis: req.Basis, ExpiresAt: req.ExpiresAt, PlacedBy: actorOf(r)}
	for _, t := range slices.Sorted(maps.Keys(req.Subject)) {
		in.Subject = append(in.Subject, lethe.SubjectDigest{Type: t, Digest: s.digester.Sum(t, req.Subject[t])})
	}
	h, created, err := s.store.PutHold(r.Context(), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if created {
		w.Header().Set("Location", "/v1/holds/"+id)
	}
	writeJSON(w, putStatus(created), h)
}

func (s *Server) getHold(w http.ResponseWriter, r *http.Request) {
	h, err := s.store.GetHold(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) {
	activeOnly := true
	switch v := r.URL.Query().Get("all"); v {
	case "", "false":
	case "true":
		activeOnly = false
	default:
		s.writeError(w, r, invalid("invalid_all", "all must be true or false"))
		return
	}
	items, err := s.store.ListHolds(r.Context(), activeOnly)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, holdList{Items: items})
}

// liftHold ends a hold and wakes the requests it kept systems of, which
// then erase them. The lift is recorded first: a request that misses the
// wake-up (its workflow engine briefly down) finds the hold lifted at its
// next daily check.
func (s *Server) liftHold(w http.ResponseWriter, r *http.Request) {
	h, requests, err := s.store.LiftHold(r.Context(), r.PathValue("id"), actorOf(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, id := range requests {
		if err := s.engine.HoldsLifted(r.Context(), id); err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "held request not woken; it checks its holds daily",
				slog.String("request_id", id), slog.String("error", err.Error()))
		}
	}
	writeJSON(w, http.StatusOK, h)
}

// validSubject checks a subject map as an erasure request's: its messages
// name well-formed types, never values.
func validSubject(subject map[string]string) error {
	return erasureRequest{Subject: subject}.validateSubject()
}
