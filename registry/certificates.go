package registry

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe/certificate"
)

var _ certificate.Store = (*Store)(nil)

// StoredCertificate returns the certificate stored for a request, exactly
// as it was issued, with found false when none is. An id that is not a
// UUID names no request.
func (s *Store) StoredCertificate(ctx context.Context, requestID string) ([]byte, bool, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return nil, false, erasureNotFound()
	}
	var doc []byte
	err = s.db.QueryRowContext(ctx,
		`SELECT document FROM erasure_certificates WHERE request_id = $1`, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.fail("read certificate", err)
	}
	return doc, true, nil
}

// CertificateFacts reads what a certificate of the request states (the
// request with its systems, its subject digests, its last audit link and
// the audit chain's head) in one repeatable-read snapshot, so that they
// agree with each other.
func (s *Store) CertificateFacts(ctx context.Context, requestID string) (certificate.Facts, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return certificate.Facts{}, erasureNotFound()
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return certificate.Facts{}, s.fail("read certificate facts", err)
	}
	defer tx.Rollback()
	var f certificate.Facts
	if f.Erasure, err = getErasure(ctx, tx, id); err != nil {
		return certificate.Facts{}, s.fail("read certificate facts", err)
	}
	if f.Subject, err = subjectDigests(ctx, tx, id); err != nil {
		return certificate.Facts{}, s.fail("read certificate facts", err)
	}
	last, err := requestAuditHead(ctx, tx, id)
	if err != nil {
		return certificate.Facts{}, s.fail("read certificate facts", err)
	}
	head, err := auditHead(ctx, tx)
	if err != nil {
		return certificate.Facts{}, s.fail("read certificate facts", err)
	}
	f.RequestLast = certificate.Link{Seq: last.Seq, Hash: last.Hash}
	f.ChainHead = certificate.Link{Seq: head.Seq, Hash: head.Hash}
	return f, tx.Commit()
}

// SaveCertificate stores a request's certificate unless one is stored
// already, and returns the stored one: when two replicas issue at once, the
// first insert wins and both answer its document.
func (s *Store) SaveCertificate(ctx context.Context, requestID, keyID string, issuedAt time.Time, doc []byte) ([]byte, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return nil, erasureNotFound()
	}
	if _, err := s.db.ExecContext(ctx, `
		INSERT INTO erasure_certificates (request_id, key_id, issued_at, document)
		VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING`,
		id, keyID, issuedAt, doc); err != nil {
		if pq.As(err, pqerror.ForeignKeyViolation) != nil {
			return nil, erasureNotFound()
		}
		return nil, s.fail("save certificate", err)
	}
	stored, found, err := s.StoredCertificate(ctx, requestID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, s.fail("save certificate", errors.New("the stored certificate is not found after its insert"))
	}
	return stored, nil
}
