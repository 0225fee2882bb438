package api

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// DefaultPolicies are the named deadline windows a request may choose when
// the configuration names none: GDPR Art. 12(3) allows one month (30 days
// here), the CCPA 45 days (Cal. Civ. Code 1798.130).
var DefaultPolicies = map[string]time.Duration{
	"gdpr": 30 * 24 * time.Hour,
	"ccpa": 45 * 24 * time.Hour,
}

var policyNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// maxDeadline bounds an explicit deadline: no law allows a year.
const maxDeadline = 366 * 24 * time.Hour

// window decides a new request's deadline and internal target: an explicit
// deadline wins, else the named policy's window, else the default.
func (s *Server) window(req erasureRequest, created time.Time) (deadline, target time.Time, err error) {
	switch {
	case req.Deadline != nil:
		deadline = req.Deadline.UTC().Truncate(time.Microsecond)
		if !deadline.After(created) || deadline.Sub(created) > maxDeadline {
			return time.Time{}, time.Time{}, invalid("invalid_deadline", "deadline must be in the future and within a year")
		}
	case req.Policy != "":
		d, ok := s.policies[req.Policy]
		if !ok {
			return time.Time{}, time.Time{}, invalid("unknown_policy", "policy must be one of %s", strings.Join(sortedNames(s.policies), ", "))
		}
		deadline = created.Add(d)
	default:
		deadline = created.Add(s.deadline)
	}
	target = deadline.Add(-s.margin)
	if window := deadline.Sub(created); window < 2*s.margin {
		target = created.Add(window / 2)
	}
	return deadline, target, nil
}

// extendRequest is the body of POST /v1/erasures/{id}/extend.
type extendRequest struct {
	// By is how much later the deadline falls: at most two months.
	By lethe.Duration `json:"by"`
	// Reason is why (GDPR Art. 12(3): "taking into account the complexity
	// and number of the requests"); the subject must be told it.
	Reason string `json:"reason"`
}

func (s *Server) extendErasure(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, erasureNotFound())
		return
	}
	var req extendRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch {
	case req.By <= 0:
		s.writeError(w, r, invalid("invalid_extension", `by must be a positive duration such as "720h"`))
		return
	case strings.TrimSpace(req.Reason) == "":
		s.writeError(w, r, invalid("invalid_reason", "an extension needs a reason, which the subject must be told"))
		return
	}
	if err := maxChars("reason", req.Reason, MaxNoteChars); err != nil {
		s.writeError(w, r, err)
		return
	}
	notify := func(ctx context.Context, ext registry.Extension) error {
		return s.engine.ExtendErasure(ctx, id, ext)
	}
	e, err := s.store.ExtendErasure(r.Context(), id, time.Duration(req.By), req.Reason, actorOf(r), notify)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showErasure(e))
}
