package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// MaxBulkRetry caps how many requests one POST /v1/erasures/retry reopens:
// each costs a look at its workflow and a signal or a start, and a filter
// that matches thousands is better walked in pages an operator can watch.
const MaxBulkRetry = 100

// retryRequest is the optional body of POST /v1/erasures/{id}/retry.
type retryRequest struct {
	// Systems limits the retry to these systems; empty means every
	// system that failed.
	Systems []string `json:"systems,omitempty"`
}

func (s *Server) retryErasure(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, erasureNotFound())
		return
	}
	systems, err := retrySystems(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.retry(r.Context(), id, actorOf(r), systems)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, showErasure(e))
}

// retrySystems reads the optional body of a retry route: the systems it
// names, none meaning every system that failed.
func retrySystems(w http.ResponseWriter, r *http.Request) ([]string, error) {
	var req retryRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return nil, err
		}
	}
	for _, name := range req.Systems {
		if !lethe.ValidSystemName(name) {
			return nil, invalid("invalid_system", "systems must hold system names")
		}
	}
	return req.Systems, nil
}

// retry reopens one request: the ledger records who asked and which
// systems, and the workflow is told in the same transaction, so that
// neither knows of a retry the other does not.
func (s *Server) retry(ctx context.Context, id, actor string, systems []string) (lethe.Erasure, error) {
	notify := func(ctx context.Context, failed []string) error {
		return s.engine.RetryErasure(ctx, id, workflows.RetrySignal{Actor: actor, Systems: failed})
	}
	return s.store.RetryErasure(ctx, id, actor, systems, notify)
}

// bulkRetryRequest is the body of POST /v1/erasures/retry: which failed
// requests to reopen.
type bulkRetryRequest struct {
	// Status is failed (the default) or running: a request still open
	// with a system that failed.
	Status lethe.RequestStatus `json:"status,omitempty"`
	// System keeps requests in which this system failed, and retries that
	// system only.
	System string `json:"system,omitempty"`
	// Since keeps failures recorded at or after it.
	Since *time.Time `json:"since,omitempty"`
	// After is the last request id of the previous call's answer, to go on
	// past the cap.
	After string `json:"after,omitempty"`
	// Limit is at most MaxBulkRetry, which is also the default.
	Limit int `json:"limit,omitempty"`
}

// BulkRetryResult is the answer of POST /v1/erasures/retry; the CLI reads
// it into the same type.
type BulkRetryResult struct {
	// Retried counts the requests reopened, listed in RequestIDs.
	Retried    int      `json:"retried"`
	RequestIDs []string `json:"request_ids"`
	// Skipped are requests the filter chose that could not be retried,
	// each with the code a single retry would have answered.
	Skipped []BulkRetrySkip `json:"skipped"`
	// More is set when the cap stopped the call: send it again with After
	// set to Last.
	More bool   `json:"more"`
	Last string `json:"last,omitempty"`
}

// BulkRetrySkip is a request a bulk retry chose but could not retry.
type BulkRetrySkip struct {
	RequestID string `json:"request_id"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

func (s *Server) bulkRetry(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req bulkRetryRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Status == "" {
		req.Status = lethe.RequestFailed
	}
	switch {
	case req.Status != lethe.RequestFailed && req.Status != lethe.RequestRunning:
		err = invalid("invalid_status", "status must be failed or running")
	case req.System != "" && !lethe.ValidSystemName(req.System):
		err = invalid("invalid_system", "system must be a system name")
	case req.After != "" && !wire.ValidID(req.After):
		err = invalid("invalid_after", "after must be a request id")
	case req.Limit < 0 || req.Limit > MaxBulkRetry:
		err = invalid("invalid_limit", "limit must be from 1 to %d", MaxBulkRetry)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Limit == 0 {
		req.Limit = MaxBulkRetry
	}
	actor := actorOf(r)
	run := func(ctx context.Context) (json.RawMessage, error) {
		res, err := s.retryMatching(ctx, req, actor)
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}
	var out json.RawMessage
	if key == "" {
		out, err = run(r.Context())
	} else {
		canonical, merr := json.Marshal(req)
		if merr != nil {
			s.writeError(w, r, fmt.Errorf("canonicalize bulk retry: %w", merr))
			return
		}
		var replayed bool
		out, replayed, err = s.store.BulkRetryOnce(r.Context(), s.digester.Sum("idempotency_key", key),
			s.digester.Sum("bulk_retry", string(canonical)), actor, run)
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(out, '\n'))
}

// retryMatching reopens, one by one, the requests the filter chooses. A
// request that cannot be retried (its workflow gone, or too old for a
// retry while it runs) is reported and skipped; an unavailable database or
// workflow engine stops the call, and what it reopened stays reopened.
func (s *Server) retryMatching(ctx context.Context, req bulkRetryRequest, actor string) (BulkRetryResult, error) {
	f := registry.RetryFilter{Status: req.Status, System: req.System, After: req.After, Limit: req.Limit}
	if req.Since != nil {
		f.Since = *req.Since
	}
	ids, more, err := s.store.FailedErasures(ctx, f)
	if err != nil {
		return BulkRetryResult{}, err
	}
	res := BulkRetryResult{RequestIDs: []string{}, Skipped: []BulkRetrySkip{}, More: more}
	var systems []string
	if req.System != "" {
		systems = []string{req.System}
	}
	for _, id := range ids {
		_, err := s.retry(ctx, id, actor, systems)
		var le *lethe.Error
		switch {
		case err == nil:
			res.Retried++
			res.RequestIDs = append(res.RequestIDs, id)
		case errors.As(err, &le) && (le.Kind == lethe.KindConflict || le.Kind == lethe.KindNotFound):
			res.Skipped = append(res.Skipped, BulkRetrySkip{RequestID: id, Code: le.Code, Message: le.Message})
		default:
			return BulkRetryResult{}, err
		}
	}
	if more && len(ids) > 0 {
		res.Last = ids[len(ids)-1]
	}
	return res, nil
}
