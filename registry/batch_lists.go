package registry

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// BatchFilter selects a page of ListBatches.
type BatchFilter struct {
	// Status, when set, keeps only batches in that status.
	Status lethe.RequestStatus
	// Limit is the page size: zero means DefaultListLimit, and it is capped
	// at MaxListLimit.
	Limit int
	// Cursor is the nextCursor of the previous page; empty for the first.
	Cursor string
}

// ListBatches returns one page of batches, newest first, with their
// subjects counted by status, cut by keyset on (created_at, id) as
// ListErasures' pages are. Systems is left empty: counting every outcome
// of up to MaxListLimit batches of 100,000 subjects is GetBatch's work,
// for one batch at a time. nextCursor is empty on the last page.
func (s *Store) ListBatches(ctx context.Context, f BatchFilter) (items []lethe.Batch, nextCursor string, err error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown batch status %q", f.Status)
	}
	limit := listLimit(f.Limit)
	var (
		conds []string
		args  []any
	)
	if f.Status != "" {
		args = append(args, f.Status)
		conds = append(conds, fmt.Sprintf("status = $%d", len(args)))
	}
	query, args, err := newestFirst(`SELECT `+batchColumns+` FROM erasure_batches`, conds, args, f.Cursor, limit)
	if err != nil {
		return nil, "", err
	}

	items, nextCursor, err = newestFirstPage(ctx, s.db, query, args, limit, func(r scanner) (lethe.Batch, error) {
		b, err := scanBatch(r)
		b.Systems = []lethe.BatchSystemCounts{}
		return b, err
	}, func(b lethe.Batch) (time.Time, string) { return b.CreatedAt, b.ID })
	if err != nil {
		return nil, "", s.fail("list batches", err)
	}
	ids := make([]string, len(items))
	for i, b := range items {
		ids[i] = b.ID
	}
	counts, err := batchCounts(ctx, s.db, ids)
	if err != nil {
		return nil, "", s.fail("list batches", err)
	}
	for i := range items {
		items[i].Counts = counts[items[i].ID]
	}
	return items, nextCursor, nil
}

// BatchSubjectFilter selects a page of ListBatchSubjects.
type BatchSubjectFilter struct {
	BatchID string
	// Status, when set, keeps only subjects in that status.
	Status lethe.RequestStatus
	// Limit is the page size: zero means DefaultListLimit, and it is capped
	// at MaxListLimit.
	Limit int
	// Cursor is the nextCursor of the previous page; empty for the first.
	Cursor string
}

// ListBatchSubjects returns one page of a batch's subjects in item order,
// each with its digests (ordered by type, then digest) and its systems'
// progress (ordered by name), read in one snapshot. Pages are cut after
// the last item, so a subject changing status while a client pages through
// is never seen twice. nextCursor is empty on the last page; an unknown
// batch is batch_not_found.
func (s *Store) ListBatchSubjects(ctx context.Context, f BatchSubjectFilter) (items []lethe.BatchSubject, nextCursor string, err error) {
	id, err := uuid.Parse(f.BatchID)
	if err != nil {
		return nil, "", batchNotFound()
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown subject status %q", f.Status)
	}
	after := -1
	if f.Cursor != "" {
		var ok bool
		if after, ok = decodeItemCursor(f.Cursor); !ok {
			return nil, "", lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is not one this API issued")
		}
	}
	limit := listLimit(f.Limit)

	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	defer tx.Rollback()
	var known bool
	if err := tx.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM erasure_batches WHERE id = $1)`, id).Scan(&known); err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	if !known {
		return nil, "", batchNotFound()
	}
	// With a status, the index on (batch_id, status, item) serves the page.
	args := []any{id, after, limit + 1}
	query := `SELECT item, status FROM batch_subjects WHERE batch_id = $1 AND item > $2`
	if f.Status != "" {
		args = append(args, string(f.Status))
		query += ` AND status = $4`
	}
	rows, err := tx.QueryContext(ctx, query+` ORDER BY item LIMIT $3`, args...)
	if err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	items = []lethe.BatchSubject{}
	for rows.Next() {
		sub := lethe.BatchSubject{Identifiers: []lethe.SubjectDigest{}, Systems: []lethe.SystemProgress{}}
		if err := rows.Scan(&sub.Item, &sub.Status); err != nil {
			rows.Close()
			return nil, "", s.fail("list batch subjects", err)
		}
		items = append(items, sub)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	if len(items) > limit {
		items = items[:limit]
		nextCursor = encodeItemCursor(items[len(items)-1].Item)
	}
	if err := fillBatchSubjects(ctx, tx, id, items); err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, "", s.fail("list batch subjects", err)
	}
	return items, nextCursor, nil
}

// fillBatchSubjects adds the digests and outcomes of a page of subjects,
// in two queries.
func fillBatchSubjects(ctx context.Context, tx *sql.Tx, id uuid.UUID, items []lethe.BatchSubject) error {
	if len(items) == 0 {
		return nil
	}
	index := make(map[int]int, len(items))
	nums := make([]int64, len(items))
	for i, sub := range items {
		index[sub.Item] = i
		nums[i] = int64(sub.Item)
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT item, id_type, digest FROM batch_subject_digests
		WHERE batch_id = $1 AND item = ANY ($2::int[])
		ORDER BY item, id_type, digest`, id, pq.Array(nums))
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			item int
			d    lethe.SubjectDigest
		)
		if err := rows.Scan(&item, &d.Type, &d.Digest); err != nil {
			rows.Close()
			return err
		}
		sub := &items[index[item]]
		sub.Identifiers = append(sub.Identifiers, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, `
		SELECT item, system, status, attempts, records, confirmed_at, detail FROM batch_outcomes
		WHERE batch_id = $1 AND item = ANY ($2::int[])
		ORDER BY item, system`, id, pq.Array(nums))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			item      int
			p         lethe.SystemProgress
			confirmed sql.NullTime
		)
		if err := rows.Scan(&item, &p.Name, &p.Status, &p.Attempts, &p.Records, &confirmed, &p.Detail); err != nil {
			return err
		}
		p.ConfirmedAt = utcPtr(confirmed)
		sub := &items[index[item]]
		sub.Systems = append(sub.Systems, p)
	}
	return rows.Err()
}

// listLimit is a page size as the list filters state it: zero means
// DefaultListLimit, and none exceeds MaxListLimit.
func listLimit(n int) int {
	if n <= 0 {
		return DefaultListLimit
	}
	return min(n, MaxListLimit)
}

// An item cursor is base64url of the last item delivered (4 bytes), a
// length no other list's cursor has. Clients treat it as opaque.
const itemCursorLen = 4

func encodeItemCursor(item int) string {
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, uint32(item)))
}

func decodeItemCursor(c string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != itemCursorLen {
		return 0, false
	}
	item := binary.BigEndian.Uint32(b)
	if item > lethe.MaxBatchSubjects {
		return 0, false
	}
	return int(item), true
}
