package api

import (
	"net/http"
	"slices"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// planRequest is the body of POST /v1/erasures/plan: the subject as a
// request would give it, whose values serve only to find the legal holds
// that would keep systems, or only its identifier types.
type planRequest struct {
	Subject         map[string]string `json:"subject"`
	IdentifierTypes []string          `json:"identifier_types"`
}

// planErasure previews what a request would dispatch, and in which waves
// (lethe.ErasurePlan), without dispatching or recording anything: how a
// team checks a new system's after before a real subject depends on it.
func (s *Server) planErasure(w http.ResponseWriter, r *http.Request) {
	var req planRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	var (
		types   []string
		digests []lethe.SubjectDigest
	)
	switch {
	case len(req.Subject) > 0 && len(req.IdentifierTypes) > 0:
		s.writeError(w, r, invalid("invalid_plan", "give either subject or identifier_types, not both"))
		return
	case len(req.Subject) > 0:
		if err := (erasureRequest{Subject: req.Subject}).validateSubject(); err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, id := range (erasureRequest{Subject: req.Subject}).subject() {
			types = append(types, id.Type)
			digests = append(digests, lethe.SubjectDigest{Type: id.Type, Digest: s.digester.Sum(id.Type, id.Value)})
		}
	case len(req.IdentifierTypes) > 0:
		if len(req.IdentifierTypes) > wire.MaxIdentifiers {
			s.writeError(w, r, invalid("invalid_plan", "identifier_types has more than %d types", wire.MaxIdentifiers))
			return
		}
		var err error
		if types, err = identifierTypes("identifier_types", req.IdentifierTypes); err != nil {
			s.writeError(w, r, err)
			return
		}
	default:
		s.writeError(w, r, invalid("invalid_plan", "give subject (type → value) or identifier_types"))
		return
	}
	slices.Sort(types)
	plan, err := s.store.PlanErasure(r.Context(), types, digests, s.now().UTC())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}
