package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

const batchColumns = `id, status, overdue, total, duplicates, subject_types, reason, requested_by, created_by,
	dry_run, created_at, deadline, completed_at, workflow_id`

// batchInsertRows is how many rows one statement of CreateBatch inserts:
// few enough that its arrays stay a few hundred kilobytes, enough that
// 100,000 subjects take a few dozen round trips.
const batchInsertRows = 10_000

// NewBatch is a batch as the API records it: its subjects as keyed
// digests, already merged and cut into chunks. The values travel to the
// workflows, never here.
type NewBatch struct {
	// ID is the batch's UUID, chosen by the caller so that the workflow ID
	// can be derived before anything is written.
	ID string
	// Chunks are every chunk, in order: Chunks[i].Chunk is i.
	Chunks []BatchChunkRef
	// Subjects are the distinct subjects in item order: Subjects[i].Item
	// is i.
	Subjects []NewBatchSubject
	// Duplicates counts the entries of the submission merged into an
	// earlier subject.
	Duplicates int
	// SubjectTypes are the sorted distinct identifier types of the whole
	// batch; when empty, CreateBatch derives them from Subjects.
	SubjectTypes []string
	Reason       string
	RequestedBy  string
	// CreatedBy is the authenticated principal submitting the batch; it is
	// also the actor of the batch's received audit event.
	CreatedBy string
	DryRun    bool
	// IdempotencyKey is the client's Idempotency-Key header; "" for none.
	IdempotencyKey string
	// RequestHash identifies the submission, so that a reused key with
	// another body is told apart from a replay.
	RequestHash string
	// CreatedAt defaults to the store's clock, Deadline to CreatedAt plus
	// lethe.DefaultDeadline.
	CreatedAt  time.Time
	Deadline   time.Time
	WorkflowID string
}

// BatchChunkRef names one chunk of a batch: its number and its UUID, which
// is its workflow's id and its commands' request_id or batch_id on the wire.
type BatchChunkRef struct {
	Chunk int
	ID    string
}

// NewBatchSubject is one distinct subject of a new batch: its position, its
// item_id on the wire, its chunk and the keyed digests of its identifiers.
type NewBatchSubject struct {
	Item    int
	ItemID  string
	Chunk   int
	Digests []lethe.SubjectDigest
}

// CreateBatch records a new batch and starts its workflow, so that a batch
// exists in the ledger exactly when its workflow was started, as
// CreateErasure does for a request.
//
// In one transaction it inserts the batch (pending), its chunks, its
// subjects (pending) and their digests, many rows per statement, then takes
// the batch's lock (BatchRecorded waits on it), calls start, appends the
// received audit event and commits; when start fails nothing is written and
// its error is returned.
//
// With an IdempotencyKey already used, the existing batch is returned with
// created false and start is not called; if it was made from a different
// body, the error is an idempotency_conflict.
func (s *Store) CreateBatch(ctx context.Context, in NewBatch, start func(ctx context.Context) error) (b lethe.Batch, created bool, err error) {
	id, err := uuid.Parse(in.ID)
	if err != nil {
		return lethe.Batch{}, false, lethe.Errorf(lethe.KindInvalid, "invalid_batch_id", "the batch id must be a UUID")
	}
	if err := checkNewBatch(in); err != nil {
		return lethe.Batch{}, false, err
	}
	now := s.now()
	createdAt := in.CreatedAt
	if createdAt.IsZero() {
		createdAt = now
	}
	deadline := in.Deadline
	if deadline.IsZero() {
		deadline = createdAt.Add(lethe.DefaultDeadline)
	}
	types := in.SubjectTypes
	if len(types) == 0 {
		var all []lethe.SubjectDigest
		for _, sub := range in.Subjects {
			all = append(all, sub.Digests...)
		}
		types = subjectTypes(all)
	}
	var key sql.NullString
	if in.IdempotencyKey != "" {
		key = sql.NullString{String: in.IdempotencyKey, Valid: true}
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.Batch{}, false, s.fail("create batch", err)
	}
	defer tx.Rollback()

	// NULL keys never conflict, so batches without a key always insert;
	// a taken key makes the insert wait for its holder, then do nothing.
	b, err = scanBatch(tx.QueryRowContext(ctx, `
		INSERT INTO erasure_batches (id, status, total, duplicates, chunks, subject_types, reason,
			requested_by, created_by, dry_run, idempotency_key, request_hash, created_at, deadline,
			updated_at, workflow_id)
		VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (idempotency_key) DO NOTHING
		RETURNING `+batchColumns,
		id, len(in.Subjects), in.Duplicates, len(in.Chunks), pq.Array(types), in.Reason,
		in.RequestedBy, in.CreatedBy, in.DryRun, key, in.RequestHash, createdAt, deadline,
		now, in.WorkflowID))
	if errors.Is(err, sql.ErrNoRows) {
		b, err = s.existingBatch(ctx, tx, in)
		return b, false, err
	}
	if err != nil {
		return lethe.Batch{}, false, s.fail("create batch", err)
	}
	b.Counts = lethe.BatchCounts{Pending: b.Total}
	b.Systems = []lethe.BatchSystemCounts{}

	if err := insertBatchRows(ctx, tx, id, in, now); err != nil {
		return lethe.Batch{}, false, s.fail("create batch", err)
	}
	// The workflow may ask before this transaction commits, or find that
	// it never did: BatchRecorded waits on this lock to tell.
	cls, lock := requestLock(id)
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, cls, lock); err != nil {
		return lethe.Batch{}, false, s.fail("create batch: lock batch", err)
	}
	if start != nil {
		if err := start(ctx); err != nil {
			return lethe.Batch{}, false, err
		}
	}
	// Last, so the audit chain's head is locked only until the commit and
	// never while start talks to Temporal.
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: b.ID, Kind: lethe.AuditReceived, At: createdAt, Actor: in.CreatedBy,
		Detail: fmt.Sprintf("batch of %d subjects, %d merged duplicates", b.Total, b.Duplicates),
	}}, now); err != nil {
		return lethe.Batch{}, false, s.fail("create batch: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Batch{}, false, s.fail("create batch", err)
	}
	return b, true, nil
}

// checkNewBatch refuses a batch the API could not have meant: its chunks
// and items must be numbered in order, every subject must name a chunk of
// the batch and have at least one digest.
func checkNewBatch(in NewBatch) error {
	invalid := func(format string, args ...any) error {
		return lethe.Errorf(lethe.KindInvalid, "invalid_batch", format, args...)
	}
	if len(in.Subjects) == 0 {
		return invalid("the batch has no subject")
	}
	if len(in.Subjects) > lethe.MaxBatchSubjects {
		return lethe.Errorf(lethe.KindTooLarge, "too_many_subjects",
			"a batch takes at most %d subjects", lethe.MaxBatchSubjects)
	}
	if in.Duplicates < 0 {
		return invalid("the batch counts %d duplicates", in.Duplicates)
	}
	if len(in.Chunks) == 0 {
		return invalid("the batch has no chunk")
	}
	for i, c := range in.Chunks {
		if c.Chunk != i {
			return invalid("chunk %d is numbered %d", i, c.Chunk)
		}
		if _, err := uuid.Parse(c.ID); err != nil {
			return invalid("the id of chunk %d is not a UUID", i)
		}
	}
	for i, sub := range in.Subjects {
		switch {
		case sub.Item != i:
			return invalid("subject %d is numbered %d", i, sub.Item)
		case sub.Chunk < 0 || sub.Chunk >= len(in.Chunks):
			return invalid("subject %d names chunk %d of %d", i, sub.Chunk, len(in.Chunks))
		case len(sub.Digests) == 0:
			return invalid("subject %d has no identifier", i)
		}
		if _, err := uuid.Parse(sub.ItemID); err != nil {
			return invalid("the item_id of subject %d is not a UUID", i)
		}
	}
	return nil
}

// insertBatchRows writes a new batch's chunks, subjects and digests,
// batchInsertRows rows per statement.
func insertBatchRows(ctx context.Context, tx *sql.Tx, id uuid.UUID, in NewBatch, now time.Time) error {
	chunks := make([]int64, len(in.Chunks))
	chunkIDs := make([]string, len(in.Chunks))
	for i, c := range in.Chunks {
		chunks[i], chunkIDs[i] = int64(c.Chunk), c.ID
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO batch_chunks (batch_id, chunk, id)
		SELECT $1, u.chunk, u.id FROM unnest($2::int[], $3::uuid[]) AS u (chunk, id)`,
		id, pq.Array(chunks), pq.Array(chunkIDs)); err != nil {
		return fmt.Errorf("record chunks: %w", err)
	}

	for lo := 0; lo < len(in.Subjects); lo += batchInsertRows {
		part := in.Subjects[lo:min(lo+batchInsertRows, len(in.Subjects))]
		items := make([]int64, len(part))
		itemIDs := make([]string, len(part))
		subjectChunks := make([]int64, len(part))
		for i, sub := range part {
			items[i], itemIDs[i], subjectChunks[i] = int64(sub.Item), sub.ItemID, int64(sub.Chunk)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO batch_subjects (batch_id, item, item_id, chunk, status, updated_at)
			SELECT $1, u.item, u.item_id, u.chunk, 'pending', $5
			FROM unnest($2::int[], $3::uuid[], $4::int[]) AS u (item, item_id, chunk)`,
			id, pq.Array(items), pq.Array(itemIDs), pq.Array(subjectChunks), now); err != nil {
			return fmt.Errorf("record subjects: %w", err)
		}
	}

	var (
		items   = make([]int64, 0, batchInsertRows)
		types   = make([]string, 0, batchInsertRows)
		digests = make([]string, 0, batchInsertRows)
	)
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		// A digest given twice for one subject is recorded once.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO batch_subject_digests (batch_id, item, id_type, digest)
			SELECT $1, u.item, u.t, u.d FROM unnest($2::int[], $3::text[], $4::text[]) AS u (item, t, d)
			ON CONFLICT DO NOTHING`,
			id, pq.Array(items), pq.Array(types), pq.Array(digests)); err != nil {
			return fmt.Errorf("record subject digests: %w", err)
		}
		items, types, digests = items[:0], types[:0], digests[:0]
		return nil
	}
	for _, sub := range in.Subjects {
		for _, d := range sub.Digests {
			items = append(items, int64(sub.Item))
			types = append(types, d.Type)
			digests = append(digests, d.Digest)
			if len(items) == batchInsertRows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// existingBatch answers a batch whose idempotency key is taken. The insert
// that found the conflict waited for the other transaction, so the row is
// committed and visible to this statement.
func (s *Store) existingBatch(ctx context.Context, tx *sql.Tx, in NewBatch) (lethe.Batch, error) {
	var hash string
	b, err := scanBatch(scanInto(tx.QueryRowContext(ctx,
		`SELECT `+batchColumns+`, request_hash FROM erasure_batches WHERE idempotency_key = $1`,
		in.IdempotencyKey), &hash))
	if err != nil {
		return lethe.Batch{}, s.fail("create batch: read existing batch", err)
	}
	if hash != in.RequestHash {
		return lethe.Batch{}, lethe.Errorf(lethe.KindConflict, "idempotency_conflict",
			"this Idempotency-Key was already used with a different request body")
	}
	if err := fillBatch(ctx, tx, &b); err != nil {
		return lethe.Batch{}, s.fail("create batch: read existing batch", err)
	}
	return b, nil
}

// BatchRecorded reports whether the ledger holds batch id, as
// ErasureRecorded does for a request: it first waits for a CreateBatch
// still holding the batch's lock to end, so that false is final.
func (s *Store) BatchRecorded(ctx context.Context, id string) (bool, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return false, nil
	}
	cls, key := requestLock(uid)
	if _, err := s.db.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1, $2)`, cls, key); err != nil {
		return false, s.fail("check batch: wait for its creation", err)
	}
	var recorded bool
	if err := s.db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM erasure_batches WHERE id = $1)`, uid).Scan(&recorded); err != nil {
		return false, s.fail("check batch", err)
	}
	return recorded, nil
}

// GetBatch returns one batch with its subjects counted by status and its
// systems, ordered by name, counted by outcome. An id that is not a UUID
// names no batch.
func (s *Store) GetBatch(ctx context.Context, id string) (lethe.Batch, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return lethe.Batch{}, batchNotFound()
	}
	b, err := getBatch(ctx, s.db, uid)
	if err != nil {
		return lethe.Batch{}, s.fail("get batch", err)
	}
	return b, nil
}

// getBatch reads one batch with its counts through q.
func getBatch(ctx context.Context, q querier, id uuid.UUID) (lethe.Batch, error) {
	b, err := scanBatch(q.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM erasure_batches WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return lethe.Batch{}, batchNotFound()
	}
	if err != nil {
		return lethe.Batch{}, err
	}
	if err := fillBatch(ctx, q, &b); err != nil {
		return lethe.Batch{}, err
	}
	return b, nil
}

// fillBatch adds a batch's subject counts and system counts.
func fillBatch(ctx context.Context, q querier, b *lethe.Batch) error {
	counts, err := batchCounts(ctx, q, []string{b.ID})
	if err != nil {
		return err
	}
	b.Counts = counts[b.ID]
	b.Systems, err = batchSystems(ctx, q, b.ID)
	return err
}

// batchCounts counts the subjects of several batches by status, in one
// query served by the index on (batch_id, status, item).
func batchCounts(ctx context.Context, q querier, ids []string) (map[string]lethe.BatchCounts, error) {
	out := make(map[string]lethe.BatchCounts, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `
		SELECT batch_id, status, count(*) FROM batch_subjects
		WHERE batch_id = ANY ($1::uuid[])
		GROUP BY batch_id, status`, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id     string
			status lethe.RequestStatus
			n      int
		)
		if err := rows.Scan(&id, &status, &n); err != nil {
			return nil, err
		}
		c := out[id]
		switch status {
		case lethe.RequestPending:
			c.Pending = n
		case lethe.RequestRunning:
			c.Running = n
		case lethe.RequestCompleted:
			c.Completed = n
		case lethe.RequestFailed:
			c.Failed = n
		case lethe.RequestCanceled:
			c.Canceled = n
		}
		out[id] = c
	}
	return out, rows.Err()
}

// batchSystems counts a batch's outcomes per system and status, with the
// records each system reported, ordered by system name; never nil.
func batchSystems(ctx context.Context, q querier, id string) ([]lethe.BatchSystemCounts, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT system, status, count(*), coalesce(sum(records), 0)::bigint FROM batch_outcomes
		WHERE batch_id = $1
		GROUP BY system, status
		ORDER BY system, status`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []lethe.BatchSystemCounts{}
	for rows.Next() {
		var (
			name    string
			status  lethe.SystemStatus
			n       int
			records int64
		)
		if err := rows.Scan(&name, &status, &n, &records); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, lethe.BatchSystemCounts{Name: name})
		}
		c := &out[len(out)-1]
		c.Records += records
		switch status {
		case lethe.SystemPending:
			c.Pending = n
		case lethe.SystemDispatched:
			c.Dispatched = n
		case lethe.SystemErased:
			c.Erased = n
		case lethe.SystemNotFound:
			c.NotFound = n
		case lethe.SystemRetained:
			c.Retained = n
		case lethe.SystemFailed:
			c.Failed = n
		}
	}
	return out, rows.Err()
}

// scanBatch reads the batchColumns of one row.
func scanBatch(r scanner) (lethe.Batch, error) {
	var (
		b         lethe.Batch
		completed sql.NullTime
	)
	if err := r.Scan(&b.ID, &b.Status, &b.Overdue, &b.Total, &b.Duplicates, pq.Array(&b.SubjectTypes),
		&b.Reason, &b.RequestedBy, &b.CreatedBy, &b.DryRun, &b.CreatedAt, &b.Deadline, &completed,
		&b.WorkflowID); err != nil {
		return lethe.Batch{}, err
	}
	b.SubjectTypes = nonNil(b.SubjectTypes)
	b.CreatedAt = b.CreatedAt.UTC()
	b.Deadline = b.Deadline.UTC()
	b.CompletedAt = utcPtr(completed)
	return b, nil
}

// batchNotFound does not echo the id, as erasureNotFound does not.
func batchNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "batch_not_found", "no such batch")
}
