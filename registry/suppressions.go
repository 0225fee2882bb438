package registry

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
)

// Page sizes of ListSuppressions, matching the API's limit parameter. An
// entry is a hundred-odd bytes, so pages are larger than ListErasures'.
const (
	// DefaultSuppressionLimit is the page size when the filter names none.
	DefaultSuppressionLimit = 500
	// MaxSuppressionLimit caps a page.
	MaxSuppressionLimit = 1000
)

// SuppressionFilter selects a page of ListSuppressions.
type SuppressionFilter struct {
	// Since, when set, keeps only requests that finished at or after it:
	// typically the time of the backup being restored.
	Since time.Time
	// Type, when set, keeps only identifiers of that type.
	Type string
	// Limit is the page size: zero means DefaultSuppressionLimit, and it is
	// capped at MaxSuppressionLimit.
	Limit int
	// Cursor is the NextCursor of an earlier page; empty to start.
	Cursor string
}

// SuppressionPage is one page of the suppression list.
type SuppressionPage struct {
	Items []lethe.Suppression
	// NextCursor is the position after the last entry delivered, in this
	// page or, when this one is empty, before it: the cursor to page on
	// with, and also to come back with later for what has been erased
	// since. It is empty only while nothing has been delivered.
	NextCursor string
	// More reports that further entries are there already, so the client
	// should ask again at once rather than later.
	More bool
}

// ListSuppressions returns one page of the suppression list: for every
// finished erasure request that counts, the keyed digest of each identifier
// in request_subjects (those the request was made with and any recorded for
// it later), with the time the request finished.
//
// Which requests count: those that are not dry runs and ended completed or
// failed (a failed request erased in every system but one at least tried),
// and those that ended canceled when the ledger shows that a command may
// have erased something, that is when one of their systems is erased,
// failed (a failure may come after a partial erasure) or dispatched (the
// command may have been carried out, its confirmation lost to the cancel).
// A request canceled before any command went out erased nothing, and
// erasing its subject after a restore would act on a request that was
// stopped. Requests still running are not listed yet; they are once they
// finish.
//
// Finished batches are listed the same way, with the batch's id as the
// entry's RequestID and the batch's completion time: the digests in
// batch_subject_digests of each subject that ended completed or failed or
// that a command may have erased something of (an outcome erased, failed
// or dispatched), once each per batch, never those of a dry run.
//
// Entries are ordered by the transaction that recorded the request's or
// batch's final status (see migration 0005), then by its id, type and
// digest, and only entries no transaction still running can precede are
// served. So an entry never appears behind a cursor already handed out: a
// client that comes back with its last NextCursor receives exactly what it
// has not seen. A subject erased by two requests (or batches) is listed
// once for each.
func (s *Store) ListSuppressions(ctx context.Context, f SuppressionFilter) (SuppressionPage, error) {
	if f.Type != "" && !lethe.ValidIdentifierType(f.Type) {
		return SuppressionPage{}, lethe.Errorf(lethe.KindInvalid, "invalid_type",
			"type must be an identifier type matching ^[a-z][a-z0-9_]{0,62}$")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultSuppressionLimit
	}
	limit = min(limit, MaxSuppressionLimit)

	var (
		at    suppressionCursor
		after bool
	)
	if f.Cursor != "" {
		var ok bool
		if at, ok = decodeSuppressionCursor(f.Cursor); !ok {
			return SuppressionPage{}, lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is not one this API issued")
		}
		after = true
	}

	var horizon, next string
	if err := s.db.QueryRowContext(ctx,
		`SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() s`,
	).Scan(&horizon, &next); err != nil {
		return SuppressionPage{}, s.fail("list suppressions: read the snapshot", err)
	}
	if after {
		nextXID, err := strconv.ParseUint(next, 10, 64)
		if err != nil {
			return SuppressionPage{}, fmt.Errorf("list suppressions: read the snapshot: %w", err)
		}
		// Every position handed out is below the next transaction id, so a
		// cursor at or past it was issued by another server: the database
		// was copied there with pg_dump or logical replication, which do
		// not keep transaction ids, and Migrate has moved the old entries
		// before every new one (repairFinishedXIDs).
		if at.xid >= nextXID {
			return SuppressionPage{}, lethe.Errorf(lethe.KindInvalid, "cursor_expired",
				"the cursor was issued before the database moved to another server; start again from since")
		}
	}

	query, args := suppressionQuery(horizon, f, at, after, limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return SuppressionPage{}, s.fail("list suppressions", err)
	}
	defer rows.Close()
	page := SuppressionPage{Items: []lethe.Suppression{}, NextCursor: f.Cursor}
	var last suppressionCursor
	for rows.Next() {
		var (
			xid  string
			item lethe.Suppression
		)
		if err := rows.Scan(&xid, &item.RequestID, &item.Type, &item.Digest, &item.ErasedAt); err != nil {
			return SuppressionPage{}, s.fail("list suppressions", err)
		}
		if len(page.Items) == limit {
			page.More = true
			break
		}
		pos, err := strconv.ParseUint(xid, 10, 64)
		if err != nil {
			return SuppressionPage{}, fmt.Errorf("list suppressions: transaction id %q: %w", xid, err)
		}
		item.ErasedAt = item.ErasedAt.UTC()
		page.Items = append(page.Items, item)
		last = suppressionCursor{xid: pos, request: uuid.MustParse(item.RequestID), idType: item.Type, digest: item.Digest}
	}
	if err := rows.Err(); err != nil {
		return SuppressionPage{}, s.fail("list suppressions", err)
	}
	if len(page.Items) > 0 {
		page.NextCursor = last.encode()
	}
	return page, nil
}

// suppressionQuery builds the query of one page of the suppression list: at
// most limit+1 entries after position at (when after), served only below
// the horizon. It reads requests and batches each in their own ordered,
// limited branch, so that either is walked through its indexes, and merges
// the two by position.
func suppressionQuery(horizon string, f SuppressionFilter, at suppressionCursor, after bool, limit int) (string, []any) {
	args := []any{horizon}
	// Conditions on the request or batch (r), shared by both branches.
	common := []string{
		`r.finished_xid IS NOT NULL`,
		`NOT r.dry_run`,
		`r.finished_xid < $1::xid8`,
	}
	requests := []string{
		`(r.status <> 'canceled' OR EXISTS (SELECT 1 FROM erasure_systems e
			WHERE e.request_id = r.id AND e.status IN ('dispatched', 'erased', 'failed')))`,
	}
	// A subject of a batch counts as a request does: it ended completed or
	// failed, or a command may have erased something of it.
	subjects := []string{
		`s.batch_id = r.id`,
		`(bs.status IN ('completed', 'failed') OR EXISTS (SELECT 1 FROM batch_outcomes o
			WHERE o.batch_id = bs.batch_id AND o.item = bs.item AND o.status IN ('dispatched', 'erased', 'failed')))`,
	}
	var requestsSince, batchesSince string
	if !f.Since.IsZero() {
		args = append(args, f.Since.UTC())
		n := len(args)
		common = append(common, fmt.Sprintf(`r.completed_at >= $%d`, n))
		if !after {
			// Where the first page starts: the requests before the lowest
			// position of those finished since then all finished earlier.
			// Materialized, the positions are read from the index on
			// completed_at; a plain min() would be planned as a walk up the
			// index on positions, through every request finished before.
			// Batches are found the same way through theirs.
			since := `r.finished_xid >= (
				WITH since AS MATERIALIZED (SELECT finished_xid FROM %s
					WHERE finished_xid IS NOT NULL AND NOT dry_run AND completed_at >= $%d)
				SELECT min(finished_xid) FROM since)`
			requestsSince = fmt.Sprintf(since, "erasure_requests", n)
			batchesSince = fmt.Sprintf(since, "erasure_batches", n)
		}
	}
	if f.Type != "" {
		args = append(args, f.Type)
		n := len(args)
		requests = append(requests, fmt.Sprintf(`s.id_type = $%d`, n))
		subjects = append(subjects, fmt.Sprintf(`s.id_type = $%d`, n))
	}
	if after {
		args = append(args, strconv.FormatUint(at.xid, 10), at.request, at.idType, at.digest)
		n := len(args)
		// The first condition alone is what the indexes on (finished_xid,
		// id) can seek to; the second settles ties within a request. Within
		// the batch of the cursor, the digests after it are sought in the
		// index on (batch_id, id_type, digest); within any later batch,
		// every digest is after ('', ''), as no type is empty.
		common = append(common, fmt.Sprintf(`(r.finished_xid, r.id) >= ($%d::xid8, $%d::uuid)`, n-3, n-2))
		requests = append(requests,
			fmt.Sprintf(`(r.finished_xid, r.id, s.id_type, s.digest) > ($%d::xid8, $%d::uuid, $%d, $%d)`, n-3, n-2, n-1, n))
		subjects = append(subjects, fmt.Sprintf(`(s.id_type, s.digest) > (
			CASE WHEN (r.finished_xid, r.id) = ($%[1]d::xid8, $%[2]d::uuid) THEN $%[3]d ELSE '' END,
			CASE WHEN (r.finished_xid, r.id) = ($%[1]d::xid8, $%[2]d::uuid) THEN $%[4]d ELSE '' END)`, n-3, n-2, n-1, n))
	}
	args = append(args, limit+1)
	nLimit := len(args)
	where := func(conds ...[]string) string {
		var all []string
		for _, c := range conds {
			all = append(all, c...)
		}
		return strings.Join(all, "\n\t\t\tAND ")
	}
	nonEmpty := func(c string) []string {
		if c == "" {
			return nil
		}
		return []string{c}
	}
	// Each batch's entries are ordered and limited inside the lateral
	// subquery, so that a page never sorts a whole batch of 100,000
	// subjects; DISTINCT lists once a digest two subjects share.
	query := fmt.Sprintf(`
		SELECT u.finished_xid::text, u.id, u.id_type, u.digest, u.completed_at FROM ((
			SELECT r.finished_xid, r.id, s.id_type, s.digest, r.completed_at
			FROM erasure_requests r JOIN request_subjects s ON s.request_id = r.id
			WHERE %[1]s
			ORDER BY r.finished_xid, r.id, s.id_type, s.digest
			LIMIT $%[3]d
		) UNION ALL (
			SELECT r.finished_xid, r.id, x.id_type, x.digest, r.completed_at
			FROM erasure_batches r CROSS JOIN LATERAL (
				SELECT DISTINCT s.id_type, s.digest
				FROM batch_subject_digests s
					JOIN batch_subjects bs ON bs.batch_id = s.batch_id AND bs.item = s.item
				WHERE %[2]s
				ORDER BY s.id_type, s.digest
				LIMIT $%[3]d) x
			WHERE %[4]s
			ORDER BY r.finished_xid, r.id, x.id_type, x.digest
			LIMIT $%[3]d
		)) u
		ORDER BY u.finished_xid, u.id, u.id_type, u.digest
		LIMIT $%[3]d`,
		where(common, nonEmpty(requestsSince), requests), where(subjects), nLimit,
		where(common, nonEmpty(batchesSince)))
	return query, args
}

// suppressionCursor is the position of one entry of the suppression list.
type suppressionCursor struct {
	xid     uint64
	request uuid.UUID
	idType  string
	digest  string
}

// maxCursorDigest bounds the digest a cursor may carry; package digest's
// are 64 hex digits.
const maxCursorDigest = 128

// encode writes base64url of the transaction id (8 bytes), the request id
// (16 bytes), the type's length (1 byte), the type and the digest. Clients
// treat it as opaque, as they do ListErasures' cursors.
func (c suppressionCursor) encode() string {
	b := make([]byte, 0, 8+16+1+len(c.idType)+len(c.digest))
	b = binary.BigEndian.AppendUint64(b, c.xid)
	b = append(b, c.request[:]...)
	b = append(b, byte(len(c.idType)))
	b = append(b, c.idType...)
	b = append(b, c.digest...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSuppressionCursor(s string) (suppressionCursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 8+16+1 {
		return suppressionCursor{}, false
	}
	var c suppressionCursor
	c.xid = binary.BigEndian.Uint64(b[:8])
	copy(c.request[:], b[8:24])
	n := int(b[24])
	rest := b[25:]
	if n > len(rest) {
		return suppressionCursor{}, false
	}
	c.idType, c.digest = string(rest[:n]), string(rest[n:])
	if !lethe.ValidIdentifierType(c.idType) || c.digest == "" || len(c.digest) > maxCursorDigest || !printable(c.digest) {
		return suppressionCursor{}, false
	}
	return c, true
}

// printable reports whether s is printable ASCII, which every digest is.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
