package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// Bounds of an erasure request and of its listing.
const (
	// MaxNoteChars bounds reason and requested_by.
	MaxNoteChars = 256
	// MaxIdempotencyKeyBytes bounds the Idempotency-Key header.
	MaxIdempotencyKeyBytes = 255
	// DefaultListLimit and MaxListLimit bound a page of GET /v1/erasures.
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// cancelWait bounds how long POST /v1/erasures/{id}/cancel waits for the
// workflow to close, so a stalled worker answers 503 instead of hanging.
const cancelWait = 20 * time.Second

// erasureRequest is the body of POST /v1/erasures.
type erasureRequest struct {
	Subject     map[string]string `json:"subject"`
	Reason      string            `json:"reason"`
	RequestedBy string            `json:"requested_by"`
	DryRun      bool              `json:"dry_run"`
	// Policy names the deadline window (Config.Policies), e.g. "ccpa".
	Policy string `json:"policy,omitempty"`
	// Deadline, when set, is the request's deadline, whatever the policy.
	Deadline *time.Time `json:"deadline,omitempty"`
}

// erasureList is the body of GET /v1/erasures.
type erasureList struct {
	Items      []lethe.Erasure `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

// validate checks the request. Its messages may name an identifier type
// that is well formed, never a value, and never a malformed type, which
// could be a value put in the wrong place.
func (req erasureRequest) validate() error {
	if err := req.validateSubject(); err != nil {
		return err
	}
	if err := maxChars("reason", req.Reason, MaxNoteChars); err != nil {
		return err
	}
	return maxChars("requested_by", req.RequestedBy, MaxNoteChars)
}

// validateSubject checks the subject map alone; legal holds take the same.
func (req erasureRequest) validateSubject() error {
	if len(req.Subject) == 0 {
		return invalid("invalid_subject", "subject must map at least one identifier type to its value")
	}
	if len(req.Subject) > wire.MaxIdentifiers {
		return invalid("invalid_subject", "subject has more than %d identifiers", wire.MaxIdentifiers)
	}
	for _, t := range slices.Sorted(maps.Keys(req.Subject)) {
		v := req.Subject[t]
		switch {
		case !lethe.ValidIdentifierType(t):
			return invalid("invalid_subject", "subject has a key that is not an identifier type; types must match ^[a-z][a-z0-9_]{0,62}$")
		case v == "":
			return invalid("invalid_subject", "subject value for %s is empty", t)
		case len(v) > wire.MaxValueBytes:
			return invalid("invalid_subject", "subject value for %s is longer than %d bytes", t, wire.MaxValueBytes)
		}
	}
	return nil
}

// subject returns the identifiers ordered by type, so the workflow input
// and the ledger's digests do not depend on map order.
func (req erasureRequest) subject() []wire.Identifier {
	ids := make([]wire.Identifier, 0, len(req.Subject))
	for t, v := range req.Subject {
		ids = append(ids, wire.Identifier{Type: t, Value: v})
	}
	slices.SortFunc(ids, func(a, b wire.Identifier) int {
		switch {
		case a.Type < b.Type:
			return -1
		case a.Type > b.Type:
			return 1
		}
		return 0
	})
	return ids
}

// idempotencyKey reads the optional Idempotency-Key header. Present but
// empty is a mistake, not an absence.
func idempotencyKey(r *http.Request) (key string, err error) {
	vals, ok := r.Header["Idempotency-Key"]
	if !ok {
		return "", nil
	}
	if len(vals) != 1 || !printableASCII(vals[0], MaxIdempotencyKeyBytes) {
		return "", invalid("invalid_idempotency_key",
			"Idempotency-Key must be one value of 1 to %d printable ASCII characters", MaxIdempotencyKeyBytes)
	}
	return vals[0], nil
}

func printableASCII(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Server) createErasure(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req erasureRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, input, err := s.newErasure(req, key)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in.CreatedBy = actorOf(r)
	start := func(ctx context.Context) error { return s.engine.StartErasure(ctx, input) }
	e, created, err := s.store.CreateErasure(r.Context(), in, start)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
		w.Header().Set("Location", "/v1/erasures/"+e.ID)
	}
	writeJSON(w, status, showErasure(e))
}

// newErasure builds what the ledger records (digests only) and what the
// workflow starts with (the values, which it needs for the commands).
//
// The request hash and the stored idempotency key are keyed digests too: a
// hash of the body without the key could be reversed by guessing values,
// and a client may well use something personal as its key.
func (s *Server) newErasure(req erasureRequest, key string) (registry.NewErasure, workflows.ErasureInput, error) {
	canonical, err := json.Marshal(req) // maps marshal with sorted keys
	if err != nil {
		return registry.NewErasure{}, workflows.ErasureInput{}, fmt.Errorf("canonicalize request: %w", err)
	}
	ids := req.subject()
	digests := make([]lethe.SubjectDigest, len(ids))
	for i, id := range ids {
		digests[i] = lethe.SubjectDigest{Type: id.Type, Digest: s.digester.Sum(id.Type, id.Value)}
	}
	if key != "" {
		key = s.digester.Sum("idempotency_key", key)
	}
	id := uuid.NewString()
	// PostgreSQL keeps microseconds: truncating here makes the ledger and
	// the workflow input hold the very same instants.
	created := s.now().UTC().Truncate(time.Microsecond)
	deadline, target, err := s.window(req, created)
	if err != nil {
		return registry.NewErasure{}, workflows.ErasureInput{}, err
	}
	in := registry.NewErasure{
		ID:             id,
		IdempotencyKey: key,
		RequestHash:    s.digester.Sum("request", string(canonical)),
		Subject:        digests,
		Reason:         req.Reason,
		RequestedBy:    req.RequestedBy,
		DryRun:         req.DryRun,
		CreatedAt:      created,
		Deadline:       deadline,
		Target:         target,
		WorkflowID:     workflows.ErasureWorkflowID(id),
	}
	input := workflows.ErasureInput{
		RequestID: id,
		Subject:   ids,
		DryRun:    req.DryRun,
		CreatedAt: created,
		Deadline:  deadline,
		Target:    target,
		// The workflow derives its command_ids from this secret; see
		// workflows.ErasureInput.
		CommandSeed: rand.Text(),
		Revision:    workflows.CurrentRevision,
	}
	return in, input, nil
}

// showErasure fills nil lists so every answer has the documented arrays.
func showErasure(e lethe.Erasure) lethe.Erasure {
	if e.SubjectTypes == nil {
		e.SubjectTypes = []string{}
	}
	if e.Systems == nil {
		e.Systems = []lethe.SystemProgress{}
	}
	return e
}

// erasureNotFound answers ids that cannot name a request without asking
// the store: request ids are lower-case UUIDs.
func erasureNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no erasure request has this id")
}

func (s *Server) getErasure(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, erasureNotFound())
		return
	}
	e, err := s.store.GetErasure(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showErasure(s.withProgress(r.Context(), e)))
}

// progressTimeout bounds the status query of a pending request: without a
// worker to answer it, the ledger's view is served after this long.
const progressTimeout = time.Second

// withProgress fills in a request the ledger still shows pending with where
// its workflow stands. A young request settles before it writes its steps
// to the ledger (workflows.Policy.Settle), so the ledger would show it
// pending, without systems, while its commands are out. Status, systems
// and completion come from the workflow; everything else stays the
// ledger's. When the workflow does not answer, the ledger's view stands.
func (s *Server) withProgress(ctx context.Context, e lethe.Erasure) lethe.Erasure {
	if e.Status != lethe.RequestPending {
		return e
	}
	ctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	live, err := s.engine.ErasureProgress(ctx, e.ID)
	if err != nil || !live.Status.Valid() {
		s.log.Debug("pending request shown from the ledger", "request_id", e.ID, "error", err)
		return e
	}
	e.Status, e.Systems, e.CompletedAt = live.Status, live.Systems, live.CompletedAt
	return e
}

func (s *Server) listErasures(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, limit, err := listQuery(q, DefaultListLimit, MaxListLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := registry.ErasureFilter{Status: status, Limit: limit, Cursor: q.Get("cursor")}
	switch q.Get("overdue") {
	case "", "false":
	case "true":
		f.Overdue = true
	default:
		s.writeError(w, r, invalid("invalid_overdue", "overdue must be true or false"))
		return
	}
	items, next, err := s.store.ListErasures(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := erasureList{Items: make([]lethe.Erasure, 0, len(items)), NextCursor: next}
	for _, e := range items {
		out.Items = append(out.Items, showErasure(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// listQuery reads the status and limit of a listing's query: a status
// must be a request status, a limit an integer from 1 to most (def when
// absent). The cursor is the store's to check.
func listQuery(q url.Values, def, most int) (lethe.RequestStatus, int, error) {
	status := lethe.RequestStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		return "", 0, invalid("invalid_status", "status must be one of pending, running, completed, failed, canceled")
	}
	limit := def
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > most {
			return "", 0, invalid("invalid_limit", "limit must be an integer from 1 to %d", most)
		}
		limit = n
	}
	return status, limit, nil
}

// cancelErasure stops a request; see cancelAndRead.
func (s *Server) cancelErasure(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, erasureNotFound())
		return
	}
	read := func(ctx context.Context) (lethe.Erasure, lethe.RequestStatus, error) {
		e, err := s.store.GetErasure(ctx, id)
		return e, e.Status, err
	}
	audit := func(ctx context.Context) error { return s.store.AuditCancelRequest(ctx, id, actorOf(r)) }
	stop := func(ctx context.Context) error { return s.engine.CancelErasure(ctx, id) }
	e, err := cancelAndRead(r.Context(), read, audit, stop)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showErasure(e))
}

// cancelAndRead cancels a request or a batch and answers it as the ledger
// then has it. The ledger is the truth both before and after: the workflow
// writes the canceled status as it closes, so once stop reports the
// workflow closed, reading the ledger again tells whether the cancel won
// or the request had finished on its own meanwhile. audit records who
// asked before the workflow is told.
func cancelAndRead[T any](ctx context.Context, read func(context.Context) (T, lethe.RequestStatus, error),
	audit, stop func(context.Context) error) (T, error) {
	var none T
	_, st, err := read(ctx)
	if err != nil {
		return none, err
	}
	if st.Final() {
		return none, alreadyFinished(st)
	}
	if err := audit(ctx); err != nil {
		return none, err
	}
	sctx, cancel := context.WithTimeout(ctx, cancelWait)
	cerr := stop(sctx)
	cancel()
	if cerr != nil && lethe.ErrorCode(cerr) != "already_finished" {
		return none, cerr
	}
	v, st, err := read(ctx)
	switch {
	case err != nil:
		return none, err
	case st == lethe.RequestCanceled:
		return v, nil
	case st.Final():
		return none, alreadyFinished(st)
	case cerr != nil:
		// The workflow is gone but the ledger never heard how it ended.
		return none, joinKind(lethe.Errorf(lethe.KindConflict, "already_finished",
			"the request's workflow has already closed"), cerr)
	default:
		return none, lethe.Errorf(lethe.KindUnavailable, "cancel_pending",
			"the cancellation was requested but is not recorded yet; ask again shortly")
	}
}

func alreadyFinished(st lethe.RequestStatus) *lethe.Error {
	return lethe.Errorf(lethe.KindConflict, "already_finished", "the request has already finished (status %s)", st)
}

// sortedNames lists a map's keys in order, for messages that enumerate
// what is allowed.
func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
