package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
)

// BatchLeaves returns the leaves of a batch's Merkle tree, one per subject
// in item order (the tree's order): the subject's status, its digests and
// each system's outcome and records, each list in the byte order the leaf
// encoding sorts by. The inclusion proof of one subject is built from
// them; the certificate reads them through BatchCertificateFacts instead,
// without holding them all.
func (s *Store) BatchLeaves(ctx context.Context, id string) ([]certificate.Leaf, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, batchNotFound()
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, s.fail("read batch leaves", err)
	}
	defer tx.Rollback()
	var total int
	err = tx.QueryRowContext(ctx, `SELECT total FROM erasure_batches WHERE id = $1`, uid).Scan(&total)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, batchNotFound()
	}
	if err != nil {
		return nil, s.fail("read batch leaves", err)
	}
	leaves := make([]certificate.Leaf, 0, total)
	if err := eachBatchLeaf(ctx, tx, uid, func(l certificate.Leaf) error {
		leaves = append(leaves, l)
		return nil
	}); err != nil {
		return nil, s.fail("read batch leaves", err)
	}
	return leaves, tx.Commit()
}

// eachBatchLeaf calls fn with the leaf of each subject of batch id, in item
// order, reading them in one query. Types, digests and system names are
// ordered in C collation, which is the byte order of Leaf.Canonical, so
// that the leaves need no sorting afterwards.
func eachBatchLeaf(ctx context.Context, q querier, id uuid.UUID, fn func(certificate.Leaf) error) error {
	rows, err := q.QueryContext(ctx, `
		WITH d AS (
			SELECT item,
				array_agg(id_type ORDER BY id_type COLLATE "C", digest COLLATE "C") AS types,
				array_agg(digest ORDER BY id_type COLLATE "C", digest COLLATE "C") AS digests
			FROM batch_subject_digests WHERE batch_id = $1 GROUP BY item),
		o AS (
			SELECT item,
				array_agg(system ORDER BY system COLLATE "C") AS systems,
				array_agg(status ORDER BY system COLLATE "C") AS outcomes,
				array_agg(records ORDER BY system COLLATE "C") AS records
			FROM batch_outcomes WHERE batch_id = $1 GROUP BY item)
		SELECT s.status, d.types, d.digests, o.systems, o.outcomes, o.records
		FROM batch_subjects s
			LEFT JOIN d ON d.item = s.item
			LEFT JOIN o ON o.item = s.item
		WHERE s.batch_id = $1
		ORDER BY s.item`, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l                                 certificate.Leaf
			types, digests, systems, outcomes []string
			records                           []int64
		)
		if err := rows.Scan(&l.Status, pq.Array(&types), pq.Array(&digests),
			pq.Array(&systems), pq.Array(&outcomes), pq.Array(&records)); err != nil {
			return err
		}
		l.Subject = make([]certificate.Digest, len(types))
		for i := range types {
			l.Subject[i] = certificate.Digest{Type: types[i], Digest: digests[i]}
		}
		l.Systems = make([]certificate.LeafSystem, len(systems))
		for i := range systems {
			l.Systems[i] = certificate.LeafSystem{Name: systems[i], Outcome: outcomes[i], Records: records[i]}
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

// BatchSubjectByDigest returns the item of the subject of batch id that has
// an identifier with that keyed digest (of any type, recorded with the
// batch or revealed later), the first such when, against the merging of
// duplicates, two have. A batch without one is subject_not_found, an
// unknown batch batch_not_found.
func (s *Store) BatchSubjectByDigest(ctx context.Context, id, digest string) (item int, err error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return 0, batchNotFound()
	}
	var found sql.NullInt64
	err = s.db.QueryRowContext(ctx, `
		SELECT d.item FROM erasure_batches b
		LEFT JOIN LATERAL (
			SELECT item FROM batch_subject_digests
			WHERE batch_id = b.id AND digest = $2
			ORDER BY item LIMIT 1) d ON true
		WHERE b.id = $1`, uid, digest).Scan(&found)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, batchNotFound()
	}
	if err != nil {
		return 0, s.fail("find batch subject", err)
	}
	if !found.Valid {
		return 0, lethe.Errorf(lethe.KindNotFound, "subject_not_found", "the batch has no subject with an identifier of that digest")
	}
	return int(found.Int64), nil
}

// BatchCertificateFacts reads what the certificate of a finished batch
// states (the batch, every subject's leaf, the batch's last audit link and
// the audit chain's head) in one repeatable-read snapshot, so that they
// agree with each other, as CertificateFacts does for a request. The
// leaves go into a certificate.Tally one at a time, so memory does not
// grow with the batch. A batch still open is a KindConflict not_finished.
func (s *Store) BatchCertificateFacts(ctx context.Context, id string) (certificate.BatchFacts, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return certificate.BatchFacts{}, batchNotFound()
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return certificate.BatchFacts{}, s.fail("read batch certificate facts", err)
	}
	defer tx.Rollback()
	b, err := scanBatch(tx.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM erasure_batches WHERE id = $1`, uid))
	if errors.Is(err, sql.ErrNoRows) {
		return certificate.BatchFacts{}, batchNotFound()
	}
	if err != nil {
		return certificate.BatchFacts{}, s.fail("read batch certificate facts", err)
	}
	if !b.Status.Final() || b.CompletedAt == nil {
		return certificate.BatchFacts{}, lethe.Errorf(lethe.KindConflict, "not_finished",
			"the batch has not finished (status %s); a certificate is issued once it has", b.Status)
	}
	f := certificate.BatchFacts{
		ID: b.ID, Status: b.Status, DryRun: b.DryRun, Reason: b.Reason, RequestedBy: b.RequestedBy,
		CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt, FinishedAt: b.CompletedAt,
		Leaves: &certificate.Tally{},
	}
	if err := eachBatchLeaf(ctx, tx, uid, f.Leaves.Add); err != nil {
		return certificate.BatchFacts{}, s.fail("read batch certificate facts", err)
	}
	last, err := requestAuditHead(ctx, tx, uid)
	if err != nil {
		return certificate.BatchFacts{}, s.fail("read batch certificate facts", err)
	}
	head, err := auditHead(ctx, tx)
	if err != nil {
		return certificate.BatchFacts{}, s.fail("read batch certificate facts", err)
	}
	f.BatchLast = certificate.Link{Seq: last.Seq, Hash: last.Hash}
	f.ChainHead = certificate.Link{Seq: head.Seq, Hash: head.Hash}
	return f, tx.Commit()
}

// GetBatchCertificate returns the certificate stored for a batch, exactly
// as it was first issued, with found false when none is yet. An unknown
// batch is batch_not_found.
func (s *Store) GetBatchCertificate(ctx context.Context, id string) ([]byte, bool, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, false, batchNotFound()
	}
	var body []byte
	err = s.db.QueryRowContext(ctx, `
		SELECT c.body FROM erasure_batches b LEFT JOIN batch_certificates c ON c.batch_id = b.id
		WHERE b.id = $1`, uid).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, batchNotFound()
	}
	if err != nil {
		return nil, false, s.fail("read batch certificate", err)
	}
	return body, body != nil, nil
}

// PutBatchCertificate stores a batch's signed certificate unless one is
// stored already: when two replicas issue at once, the first insert wins
// and GetBatchCertificate answers it to both. signed must be the batch
// certificate of batch id; its issued_at is stored with it.
func (s *Store) PutBatchCertificate(ctx context.Context, id string, signed []byte) error {
	uid, err := uuid.Parse(id)
	if err != nil {
		return batchNotFound()
	}
	var doc struct {
		Format   string    `json:"format"`
		BatchID  string    `json:"batch_id"`
		IssuedAt time.Time `json:"issued_at"`
	}
	if err := json.Unmarshal(signed, &doc); err != nil {
		return fmt.Errorf("store batch certificate: the document does not parse: %w", err)
	}
	if doc.Format != certificate.BatchFormat || doc.BatchID != uid.String() || doc.IssuedAt.IsZero() {
		return fmt.Errorf("store batch certificate: the document is not a %s of batch %s issued at a time", certificate.BatchFormat, uid)
	}
	if _, err := s.db.ExecContext(ctx, `
		INSERT INTO batch_certificates (batch_id, body, issued_at) VALUES ($1, $2, $3)
		ON CONFLICT (batch_id) DO NOTHING`, uid, signed, doc.IssuedAt); err != nil {
		if pq.As(err, pqerror.ForeignKeyViolation) != nil {
			return batchNotFound()
		}
		return s.fail("store batch certificate", err)
	}
	return nil
}
