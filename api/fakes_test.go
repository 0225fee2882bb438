package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/testenv"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// fakeStore is an in-memory Store that records every write, so tests can
// assert that a rejected request changed nothing.
type fakeStore struct {
	mu       sync.Mutex
	now      time.Time
	systems  map[string]lethe.System
	erasures map[string]lethe.Erasure
	order    []string          // erasure ids, oldest first
	keys     map[string]string // idempotency key → erasure id
	hashes   map[string]string // erasure id → request hash

	writes      int                    // changes made: systems put or retired, requests created
	created     []registry.NewErasure  // every CreateErasure call, successful or not
	cancelBy    []string               // the actor of every audited cancel request
	sysWrites   []registry.SystemWrite // the SystemWrite of every PutSystem call
	retiredBy   []string               // the actor of every RetireSystem call
	lastFilter  registry.ErasureFilter
	err         error // when set, every call fails with it
	pingErr     error
	getErasures int

	certificates          map[string][]byte // request id → stored certificate
	certSaves             int
	suppressions          []lethe.Suppression // the list, in its order
	lastSuppressionFilter registry.SuppressionFilter
	lastOverlap           time.Duration // of the last IssueCredential

	batches       map[string]lethe.Batch
	batchOrder    []string          // batch ids, oldest first
	batchKeys     map[string]string // idempotency key → batch id
	batchHashes   map[string]string // batch id → request hash
	batchCreated  []registry.NewBatch
	batchCancelBy []string
	batchRetries  []fakeBatchRetry
	// batchStatus is a subject's status by batch id and item; an item
	// without an entry is pending.
	batchStatus            map[string]map[int]lethe.RequestStatus
	batchLeaves            map[string][]certificate.Leaf
	batchCerts             map[string][]byte
	batchCertPuts          int
	lastBatchSubjectFilter registry.BatchSubjectFilter
	// planDigests are the subject digests PlanErasure was given.
	planDigests []lethe.SubjectDigest
}

// fakeBatchRetry is one RetryBatch call that got past the store's checks.
type fakeBatchRetry struct {
	id, actor string
	systems   []string
}

func newFakeStore(now time.Time) *fakeStore {
	return &fakeStore{
		now:      now,
		systems:  map[string]lethe.System{},
		erasures: map[string]lethe.Erasure{},
		keys:     map[string]string{},
		hashes:   map[string]string{},

		certificates: map[string][]byte{},

		batches:     map[string]lethe.Batch{},
		batchKeys:   map[string]string{},
		batchHashes: map[string]string{},
		batchStatus: map[string]map[int]lethe.RequestStatus{},
		batchLeaves: map[string][]certificate.Leaf{},
		batchCerts:  map[string][]byte{},
	}
}

func systemNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "system_not_found", "no active system has this name")
}

// PutSystem records w and stores sys; whether w may change a topic is the
// registry's check, tested there (registry/actors_test.go).
func (s *fakeStore) PutSystem(ctx context.Context, sys lethe.System, w registry.SystemWrite) (lethe.System, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sysWrites = append(s.sysWrites, w)
	if s.err != nil {
		return lethe.System{}, false, s.err
	}
	s.writes++
	old, exists := s.systems[sys.Name]
	sys.UpdatedAt = s.now
	sys.CreatedAt = s.now
	if exists {
		sys.CreatedAt = old.CreatedAt
	}
	s.systems[sys.Name] = sys
	return sys, !exists, nil
}

func (s *fakeStore) GetSystem(ctx context.Context, name string) (lethe.System, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return lethe.System{}, s.err
	}
	sys, ok := s.systems[name]
	if !ok {
		return lethe.System{}, systemNotFound()
	}
	return sys, nil
}

// SystemStats answers zeros for a known system: the figures are the
// registry's (registry.TestSystemStats); the API's part is the route.
func (s *fakeStore) SystemStats(ctx context.Context, name string) (lethe.SystemStats, error) {
	if _, err := s.GetSystem(ctx, name); err != nil {
		return lethe.SystemStats{}, err
	}
	return lethe.SystemStats{System: name, Window: lethe.Duration(lethe.StatsWindow)}, nil
}

func (s *fakeStore) ListSystems(ctx context.Context) ([]lethe.System, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []lethe.System
	for _, sys := range s.systems {
		out = append(out, sys)
	}
	slices.SortFunc(out, func(a, b lethe.System) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// PlanErasure plans over the fake's systems, with no hold, and records the
// digests it was given: the holds are the registry's
// (registry.TestPlanErasureHolds); the API's part is the route.
func (s *fakeStore) PlanErasure(ctx context.Context, types []string, subject []lethe.SubjectDigest, at time.Time) (lethe.ErasurePlan, error) {
	systems, err := s.ListSystems(ctx)
	if err != nil {
		return lethe.ErasurePlan{}, err
	}
	s.mu.Lock()
	s.planDigests = append(s.planDigests, subject...)
	s.mu.Unlock()
	return lethe.PlanErasure(types, systems, nil), nil
}

func (s *fakeStore) RetireSystem(ctx context.Context, name, actor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retiredBy = append(s.retiredBy, actor)
	if s.err != nil {
		return s.err
	}
	if _, ok := s.systems[name]; !ok {
		return systemNotFound()
	}
	s.writes++
	delete(s.systems, name)
	return nil
}

// CreateErasure follows registry.Store's contract: a known key answers the
// stored request (or a conflict) without starting; otherwise start runs
// first and nothing is kept if it fails.
func (s *fakeStore) CreateErasure(ctx context.Context, in registry.NewErasure, start func(ctx context.Context) error) (lethe.Erasure, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created = append(s.created, in)
	if s.err != nil {
		return lethe.Erasure{}, false, s.err
	}
	if in.IdempotencyKey != "" {
		if id, ok := s.keys[in.IdempotencyKey]; ok {
			if s.hashes[id] != in.RequestHash {
				return lethe.Erasure{}, false, lethe.Errorf(lethe.KindConflict, "idempotency_conflict",
					"this Idempotency-Key was already used with a different request body")
			}
			return s.erasures[id], false, nil
		}
	}
	if err := start(ctx); err != nil {
		return lethe.Erasure{}, false, err
	}
	types := make([]string, len(in.Subject))
	for i, d := range in.Subject {
		types[i] = d.Type
	}
	e := lethe.Erasure{
		ID:           in.ID,
		CreatedBy:    in.CreatedBy,
		Status:       lethe.RequestPending,
		SubjectTypes: types,
		Reason:       in.Reason,
		RequestedBy:  in.RequestedBy,
		DryRun:       in.DryRun,
		CreatedAt:    in.CreatedAt,
		Deadline:     in.Deadline,
		WorkflowID:   in.WorkflowID,
		Systems:      []lethe.SystemProgress{},
	}
	s.writes++
	s.erasures[e.ID] = e
	s.order = append(s.order, e.ID)
	s.hashes[e.ID] = in.RequestHash
	if in.IdempotencyKey != "" {
		s.keys[in.IdempotencyKey] = e.ID
	}
	return e, true, nil
}

func (s *fakeStore) GetErasure(ctx context.Context, id string) (lethe.Erasure, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.getErasures++
	if s.err != nil {
		return lethe.Erasure{}, s.err
	}
	e, ok := s.erasures[id]
	if !ok {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no erasure request has this id")
	}
	return e, nil
}

// ListErasures pages newest first; its cursor is "c" and the offset.
func (s *fakeStore) ListErasures(ctx context.Context, f registry.ErasureFilter) ([]lethe.Erasure, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFilter = f
	if s.err != nil {
		return nil, "", s.err
	}
	offset := 0
	if f.Cursor != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(f.Cursor, "c"))
		if !strings.HasPrefix(f.Cursor, "c") || err != nil || n < 0 {
			return nil, "", lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is malformed")
		}
		offset = n
	}
	var all []lethe.Erasure
	for i := len(s.order) - 1; i >= 0; i-- {
		e := s.erasures[s.order[i]]
		if f.Status == "" || e.Status == f.Status {
			all = append(all, e)
		}
	}
	if offset > len(all) {
		offset = len(all)
	}
	end := min(offset+f.Limit, len(all))
	next := ""
	if end < len(all) {
		next = "c" + strconv.Itoa(end)
	}
	return all[offset:end], next, nil
}

// The fake models the registry and requests; holds and extensions are
// tested against the real registry (holds_test.go), so the fake refuses them.
var errNotModelled = lethe.Errorf(lethe.KindInternal, "internal", "the fake store does not model this; use the registry")

func (s *fakeStore) ExtendErasure(context.Context, string, time.Duration, string, string,
	func(context.Context, registry.Extension) error) (lethe.Erasure, error) {
	return lethe.Erasure{}, errNotModelled
}

func (s *fakeStore) RetryErasure(context.Context, string, string, []string,
	func(context.Context, []string) error) (lethe.Erasure, error) {
	return lethe.Erasure{}, errNotModelled
}

func (s *fakeStore) FailedErasures(context.Context, registry.RetryFilter) ([]string, bool, error) {
	return nil, false, errNotModelled
}

func (s *fakeStore) BulkRetryOnce(context.Context, string, string, string,
	func(context.Context) (json.RawMessage, error)) (json.RawMessage, bool, error) {
	return nil, false, errNotModelled
}

func (s *fakeStore) PutHold(context.Context, registry.NewHold) (lethe.Hold, bool, error) {
	return lethe.Hold{}, false, errNotModelled
}

func (s *fakeStore) LiftHold(context.Context, string, string) (lethe.Hold, []string, error) {
	return lethe.Hold{}, nil, errNotModelled
}

// AuditCancelRequest records the actor of a cancel request.
func (s *fakeStore) AuditCancelRequest(ctx context.Context, id, actor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.erasures[id]; !ok {
		return lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no erasure request has this id")
	}
	s.cancelBy = append(s.cancelBy, actor)
	return nil
}

func (s *fakeStore) GetHold(context.Context, string) (lethe.Hold, error) {
	return lethe.Hold{}, errNotModelled
}

func (s *fakeStore) ListHolds(context.Context, bool) ([]lethe.Hold, error) {
	return nil, errNotModelled
}

// ListSuppressions filters and pages s.suppressions in their order; its
// cursor is "s" and the position after the last entry delivered, given on
// the last page too, as the registry's is.
func (s *fakeStore) ListSuppressions(ctx context.Context, f registry.SuppressionFilter) (registry.SuppressionPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSuppressionFilter = f
	if s.err != nil {
		return registry.SuppressionPage{}, s.err
	}
	start := 0
	if f.Cursor != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(f.Cursor, "s"))
		if !strings.HasPrefix(f.Cursor, "s") || err != nil || n < 0 || n > len(s.suppressions) {
			return registry.SuppressionPage{}, lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is malformed")
		}
		start = n
	}
	page := registry.SuppressionPage{NextCursor: f.Cursor}
	for i := start; i < len(s.suppressions); i++ {
		e := s.suppressions[i]
		if (f.Type != "" && e.Type != f.Type) || e.ErasedAt.Before(f.Since) {
			continue
		}
		if len(page.Items) == f.Limit {
			page.More = true
			break
		}
		page.Items = append(page.Items, e)
		page.NextCursor = "s" + strconv.Itoa(i+1)
	}
	return page, nil
}

func (s *fakeStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pingErr
}

func (s *fakeStore) StoredCertificate(ctx context.Context, id string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, false, s.err
	}
	doc, ok := s.certificates[id]
	return doc, ok, nil
}

// fakeChainHead is the audit link the fake reports for every request and
// for the whole chain.
var fakeChainHead = certificate.Link{Seq: 7, Hash: strings.Repeat("7a", 32)}

func (s *fakeStore) CertificateFacts(ctx context.Context, id string) (certificate.Facts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return certificate.Facts{}, s.err
	}
	e, ok := s.erasures[id]
	if !ok {
		return certificate.Facts{}, lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no erasure request has this id")
	}
	f := certificate.Facts{Erasure: e, RequestLast: fakeChainHead, ChainHead: fakeChainHead}
	for _, in := range s.created {
		if in.ID == id {
			f.Subject = in.Subject
		}
	}
	return f, nil
}

// SaveCertificate keeps the first certificate of a request, as the
// registry does.
func (s *fakeStore) SaveCertificate(ctx context.Context, id, keyID string, issuedAt time.Time, doc []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	s.certSaves++
	if old, ok := s.certificates[id]; ok {
		return old, nil
	}
	s.certificates[id] = doc
	return doc, nil
}

// finish moves a request to a final status with its systems.
func (s *fakeStore) finish(id string, st lethe.RequestStatus, at time.Time, systems []lethe.SystemProgress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.erasures[id]
	e.Status = st
	e.CompletedAt = &at
	e.Systems = systems
	s.erasures[id] = e
}

func (s *fakeStore) setStatus(id string, st lethe.RequestStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.erasures[id]
	e.Status = st
	s.erasures[id] = e
}

// writeCount counts changes made and creations attempted.
func (s *fakeStore) writeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes + len(s.created) + len(s.batchCreated) + len(s.batchCancelBy) + len(s.batchRetries) + s.batchCertPuts
}

func batchNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "batch_not_found", "no batch has this id")
}

// CreateBatch follows registry.Store's contract, as CreateErasure does.
func (s *fakeStore) CreateBatch(ctx context.Context, in registry.NewBatch, start func(ctx context.Context) error) (lethe.Batch, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchCreated = append(s.batchCreated, in)
	if s.err != nil {
		return lethe.Batch{}, false, s.err
	}
	if in.IdempotencyKey != "" {
		if id, ok := s.batchKeys[in.IdempotencyKey]; ok {
			if s.batchHashes[id] != in.RequestHash {
				return lethe.Batch{}, false, lethe.Errorf(lethe.KindConflict, "idempotency_conflict",
					"this Idempotency-Key was already used with a different submission")
			}
			return s.batches[id], false, nil
		}
	}
	if err := start(ctx); err != nil {
		return lethe.Batch{}, false, err
	}
	b := lethe.Batch{
		ID:           in.ID,
		Status:       lethe.RequestPending,
		Total:        len(in.Subjects),
		Duplicates:   in.Duplicates,
		SubjectTypes: in.SubjectTypes,
		Reason:       in.Reason,
		RequestedBy:  in.RequestedBy,
		CreatedBy:    in.CreatedBy,
		DryRun:       in.DryRun,
		Counts:       lethe.BatchCounts{Pending: len(in.Subjects)},
		CreatedAt:    in.CreatedAt,
		Deadline:     in.Deadline,
		WorkflowID:   in.WorkflowID,
	}
	s.batches[b.ID] = b
	s.batchOrder = append(s.batchOrder, b.ID)
	s.batchHashes[b.ID] = in.RequestHash
	if in.IdempotencyKey != "" {
		s.batchKeys[in.IdempotencyKey] = b.ID
	}
	return b, true, nil
}

func (s *fakeStore) GetBatch(ctx context.Context, id string) (lethe.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return lethe.Batch{}, s.err
	}
	b, ok := s.batches[id]
	if !ok {
		return lethe.Batch{}, batchNotFound()
	}
	return b, nil
}

// fakePage cuts a page of n items at the offset a cursor of this prefix
// names, as ListErasures does.
func fakePage(prefix, cursor string, limit, n int) (from, to int, next string, err error) {
	if cursor != "" {
		off, cerr := strconv.Atoi(strings.TrimPrefix(cursor, prefix))
		if !strings.HasPrefix(cursor, prefix) || cerr != nil || off < 0 {
			return 0, 0, "", lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is malformed")
		}
		from = min(off, n)
	}
	to = min(from+limit, n)
	if to < n {
		next = prefix + strconv.Itoa(to)
	}
	return from, to, next, nil
}

// ListBatches pages newest first; its cursor is "b" and the offset.
func (s *fakeStore) ListBatches(ctx context.Context, f registry.BatchFilter) ([]lethe.Batch, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, "", s.err
	}
	var all []lethe.Batch
	for i := len(s.batchOrder) - 1; i >= 0; i-- {
		if b := s.batches[s.batchOrder[i]]; f.Status == "" || b.Status == f.Status {
			all = append(all, b)
		}
	}
	from, to, next, err := fakePage("b", f.Cursor, f.Limit, len(all))
	if err != nil {
		return nil, "", err
	}
	return all[from:to], next, nil
}

// createdBatch is the NewBatch a batch was created from.
func (s *fakeStore) createdBatch(id string) (registry.NewBatch, bool) {
	for _, in := range s.batchCreated {
		if in.ID == id {
			if _, ok := s.batches[id]; ok {
				return in, true
			}
		}
	}
	return registry.NewBatch{}, false
}

// ListBatchSubjects pages a batch's subjects in item order; its cursor is
// "i" and the offset.
func (s *fakeStore) ListBatchSubjects(ctx context.Context, f registry.BatchSubjectFilter) ([]lethe.BatchSubject, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastBatchSubjectFilter = f
	if s.err != nil {
		return nil, "", s.err
	}
	in, ok := s.createdBatch(f.BatchID)
	if !ok {
		return nil, "", batchNotFound()
	}
	var all []lethe.BatchSubject
	for _, sub := range in.Subjects {
		st, ok := s.batchStatus[f.BatchID][sub.Item]
		if !ok {
			st = lethe.RequestPending
		}
		if f.Status == "" || st == f.Status {
			all = append(all, lethe.BatchSubject{Item: sub.Item, Status: st, Identifiers: sub.Digests})
		}
	}
	from, to, next, err := fakePage("i", f.Cursor, f.Limit, len(all))
	if err != nil {
		return nil, "", err
	}
	return all[from:to], next, nil
}

// RetryBatch reopens a batch with failed subjects, calling notify first.
func (s *fakeStore) RetryBatch(ctx context.Context, id, actor string, systems []string,
	notify func(ctx context.Context) error) (lethe.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return lethe.Batch{}, s.err
	}
	b, ok := s.batches[id]
	switch {
	case !ok:
		return lethe.Batch{}, batchNotFound()
	case b.Counts.Failed == 0:
		return lethe.Batch{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry", "no subject of the batch failed")
	}
	if err := notify(ctx); err != nil {
		return lethe.Batch{}, err
	}
	s.batchRetries = append(s.batchRetries, fakeBatchRetry{id: id, actor: actor, systems: systems})
	b.Status, b.CompletedAt = lethe.RequestRunning, nil
	b.Counts.Running, b.Counts.Failed = b.Counts.Running+b.Counts.Failed, 0
	s.batches[id] = b
	return b, nil
}

// AuditBatchCancel records the actor of a cancel request.
func (s *fakeStore) AuditBatchCancel(ctx context.Context, id, actor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	b, ok := s.batches[id]
	switch {
	case !ok:
		return batchNotFound()
	case b.Status.Final():
		return lethe.Errorf(lethe.KindConflict, "already_finished", "the batch has already finished")
	}
	s.batchCancelBy = append(s.batchCancelBy, actor)
	return nil
}

func (s *fakeStore) BatchLeaves(ctx context.Context, id string) ([]certificate.Leaf, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if _, ok := s.batches[id]; !ok {
		return nil, batchNotFound()
	}
	return s.batchLeaves[id], nil
}

func (s *fakeStore) BatchSubjectByDigest(ctx context.Context, id, digest string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	in, ok := s.createdBatch(id)
	if !ok {
		return 0, batchNotFound()
	}
	for _, sub := range in.Subjects {
		for _, d := range sub.Digests {
			if d.Digest == digest {
				return sub.Item, nil
			}
		}
	}
	return 0, lethe.Errorf(lethe.KindNotFound, "subject_not_found", "no subject of the batch has this digest")
}

func (s *fakeStore) BatchCertificateFacts(ctx context.Context, id string) (certificate.BatchFacts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return certificate.BatchFacts{}, s.err
	}
	b, ok := s.batches[id]
	if !ok {
		return certificate.BatchFacts{}, batchNotFound()
	}
	f := certificate.BatchFacts{
		ID: b.ID, Status: b.Status, DryRun: b.DryRun, Reason: b.Reason, RequestedBy: b.RequestedBy,
		CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt, FinishedAt: b.CompletedAt,
		Leaves: &certificate.Tally{}, BatchLast: fakeChainHead, ChainHead: fakeChainHead,
	}
	for _, l := range s.batchLeaves[id] {
		if err := f.Leaves.Add(l); err != nil {
			return certificate.BatchFacts{}, err
		}
	}
	return f, nil
}

func (s *fakeStore) GetBatchCertificate(ctx context.Context, id string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, false, s.err
	}
	doc, ok := s.batchCerts[id]
	return doc, ok, nil
}

// PutBatchCertificate keeps the first certificate of a batch.
func (s *fakeStore) PutBatchCertificate(ctx context.Context, id string, signed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.batchCertPuts++
	if _, ok := s.batchCerts[id]; !ok {
		s.batchCerts[id] = signed
	}
	return nil
}

// finishBatch ends a batch in st, every subject with it and with one
// system, orders, that erased one record each, and gives the batch its
// leaves in item order.
func (s *fakeStore) finishBatch(id string, st lethe.RequestStatus, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.batches[id]
	in, _ := s.createdBatch(id)
	b.Status, b.CompletedAt = st, &at
	b.Counts = lethe.BatchCounts{}
	leaves := make([]certificate.Leaf, len(in.Subjects))
	statuses := map[int]lethe.RequestStatus{}
	for i, sub := range in.Subjects {
		ds := make([]certificate.Digest, len(sub.Digests))
		for j, d := range sub.Digests {
			ds[j] = certificate.Digest{Type: d.Type, Digest: d.Digest}
		}
		leaves[i] = certificate.Leaf{Status: string(st), Subject: ds,
			Systems: []certificate.LeafSystem{{Name: "orders", Outcome: string(lethe.SystemErased), Records: 1}}}
		statuses[sub.Item] = st
		switch st {
		case lethe.RequestCompleted:
			b.Counts.Completed++
		case lethe.RequestFailed:
			b.Counts.Failed++
		case lethe.RequestCanceled:
			b.Counts.Canceled++
		}
	}
	s.batches[id] = b
	s.batchLeaves[id] = leaves
	s.batchStatus[id] = statuses
}

// fakeEngine records starts and cancels; onCancel decides what a cancel does.
type fakeEngine struct {
	mu        sync.Mutex
	starts    []workflows.ErasureInput
	cancels   []string
	extends   map[string]registry.Extension
	lifts     []string
	startErr  error
	extendErr error
	onCancel  func(id string) error
	// progress answers ErasureProgress by request id; an id without an
	// entry answers progressErr, or not found.
	progress    map[string]lethe.Erasure
	progressErr error
	queried     []string
	// retries are the retry orders by request id; retryErr, when set,
	// answers them instead.
	retries  map[string][]workflows.RetrySignal
	retryErr error

	// batchStarts are the StartBatch calls that succeeded (startErr
	// answers them too); batchCancels the ids of CancelBatch calls, which
	// onCancel decides as for requests; batchRetries the retry orders by
	// batch id, retryErr answering them instead when set.
	batchStarts  []fakeBatchStart
	batchCancels []string
	batchRetries map[string][]workflows.RetrySignal
}

type fakeBatchStart struct {
	in     workflows.BatchInput
	chunks []workflows.BatchChunk
}

func (e *fakeEngine) StartBatch(ctx context.Context, in workflows.BatchInput, chunks []workflows.BatchChunk) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.startErr != nil {
		return e.startErr
	}
	e.batchStarts = append(e.batchStarts, fakeBatchStart{in: in, chunks: chunks})
	return nil
}

func (e *fakeEngine) CancelBatch(ctx context.Context, id string) error {
	e.mu.Lock()
	e.batchCancels = append(e.batchCancels, id)
	f := e.onCancel
	e.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(id)
}

func (e *fakeEngine) RetryBatch(ctx context.Context, id string, order workflows.RetrySignal) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retryErr != nil {
		return e.retryErr
	}
	if e.batchRetries == nil {
		e.batchRetries = map[string][]workflows.RetrySignal{}
	}
	e.batchRetries[id] = append(e.batchRetries[id], order)
	return nil
}

func (e *fakeEngine) RetryErasure(ctx context.Context, id string, order workflows.RetrySignal) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retryErr != nil {
		return e.retryErr
	}
	if e.retries == nil {
		e.retries = map[string][]workflows.RetrySignal{}
	}
	e.retries[id] = append(e.retries[id], order)
	return nil
}

// retryCount is how many retry orders the engine took.
func (e *fakeEngine) retryCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, o := range e.retries {
		n += len(o)
	}
	for _, o := range e.batchRetries {
		n += len(o)
	}
	return n
}

func (e *fakeEngine) ErasureProgress(ctx context.Context, id string) (lethe.Erasure, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queried = append(e.queried, id)
	if p, ok := e.progress[id]; ok {
		return p, nil
	}
	if e.progressErr != nil {
		return lethe.Erasure{}, e.progressErr
	}
	return lethe.Erasure{}, lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no workflow")
}

func (e *fakeEngine) ExtendErasure(ctx context.Context, id string, ext registry.Extension) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.extendErr != nil {
		return e.extendErr
	}
	if e.extends == nil {
		e.extends = map[string]registry.Extension{}
	}
	e.extends[id] = ext
	return nil
}

func (e *fakeEngine) HoldsLifted(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lifts = append(e.lifts, id)
	return nil
}

func (e *fakeEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.startErr != nil {
		return e.startErr
	}
	e.starts = append(e.starts, in)
	return nil
}

func (e *fakeEngine) CancelErasure(ctx context.Context, id string) error {
	e.mu.Lock()
	e.cancels = append(e.cancels, id)
	f := e.onCancel
	e.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(id)
}

func (e *fakeEngine) counts() (starts, cancels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.starts) + len(e.batchStarts), len(e.cancels) + len(e.batchCancels)
}

// fakeTopics records the topics it was asked to create.
type fakeTopics struct {
	mu      sync.Mutex
	ensured []string
	err     error
}

func (t *fakeTopics) EnsureTopics(ctx context.Context, topics ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.ensured = append(t.ensured, topics...)
	return nil
}

func (t *fakeTopics) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ensured)
}

var testNow = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)

// harness is a Server over fakes, with its log captured at debug level.
type harness struct {
	store    *fakeStore
	engine   *fakeEngine
	topics   *fakeTopics
	digester *digest.Digester
	logs     *testenv.LogBuffer
	server   *api.Server
	creds    *fakeVerifier
	handler  http.Handler
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil) }

// newHarnessWith lets a test change the config before the server is built.
func newHarnessWith(t *testing.T, modify func(*api.Config)) *harness {
	t.Helper()
	d, err := digest.New(bytes.Repeat([]byte{7}, digest.MinKeyBytes))
	if err != nil {
		t.Fatalf("digest.New: %v", err)
	}
	h := &harness{
		store:    newFakeStore(testNow),
		engine:   &fakeEngine{},
		topics:   &fakeTopics{},
		digester: d,
		logs:     &testenv.LogBuffer{},
		creds:    testCredentials.clone(),
	}
	cfg := api.Config{
		Store:    h.store,
		Engine:   h.engine,
		Topics:   h.topics,
		Digester: d,
		Logger:   slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      func() time.Time { return testNow },
		Auth:     h.creds,
	}
	if modify != nil {
		modify(&cfg)
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	h.server = srv
	h.handler = srv.Handler()
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the error code of an error answer, failing the test if
// the body is not the contract's error shape: a code and a message, and
// lines (1 to 20 positive numbers) with invalid_batch only.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Lines   *[]int `json:"lines"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body %q is not the error shape: %v", r.body, err)
	}
	if b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("error body %q lacks a code or a message", r.body)
	}
	if lines := b.Error.Lines; (lines != nil) != (b.Error.Code == "invalid_batch") ||
		lines != nil && (len(*lines) == 0 || len(*lines) > api.MaxBadLines || slices.ContainsFunc(*lines, func(n int) bool { return n < 1 })) {
		t.Fatalf("error body %q: lines go with invalid_batch only, 1 to %d numbers from 1", r.body, api.MaxBadLines)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return b.Error.Code
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

type req struct {
	method  string
	path    string
	body    string
	ctype   string // "-" for none; "" means application/json when there is a body
	headers map[string]string
	// reader, when set, is the body instead of body, for bodies streamed
	// as the handler reads them.
	reader io.Reader
}

func (h *harness) do(t *testing.T, rq req) response {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	if rq.reader != nil {
		body = rq.reader
	}
	r := httptest.NewRequest(rq.method, rq.path, body)
	switch {
	case rq.ctype == "-":
	case rq.ctype != "":
		r.Header.Set("Content-Type", rq.ctype)
	case rq.body != "" || rq.reader != nil:
		r.Header.Set("Content-Type", "application/json")
	}
	// Every call carries the all-scopes test credential unless the test
	// sets its own Authorization header ("-" sends none).
	r.Header.Set("Authorization", "Bearer "+allScopesToken)
	for k, v := range rq.headers {
		if v == "-" {
			delete(r.Header, k)
			continue
		}
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header[k] = []string{v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, r.WithContext(ctx))
	return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (h *harness) putSystem(t *testing.T, name, body string) response {
	t.Helper()
	return h.do(t, req{method: "PUT", path: "/v1/systems/" + name, body: body})
}

// createErasure posts a request and returns the answered erasure.
func (h *harness) createErasure(t *testing.T, body string) lethe.Erasure {
	t.Helper()
	res := h.do(t, req{method: "POST", path: "/v1/erasures", body: body})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %d %s, want 202", res.status, res.body)
	}
	var e lethe.Erasure
	res.decode(t, &e)
	return e
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func describe(r response) string { return fmt.Sprintf("%d %s", r.status, r.body) }
