package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// AuditHashVersion names the canonical encoding the audit chain hashes for
// a row without an actor (migration 0003 describes it); it is the first
// field of the encoding.
const AuditHashVersion = "lethe.audit.v1"

// AuditHashVersionActor names the encoding of a row with an actor: v1's
// fields under this name, followed by the actor (migration 0008). A row's
// actor decides its version, so blanking or naming an actor changes which
// encoding the verifier recomputes and breaks the row's hash.
const AuditHashVersionActor = "lethe.audit.v2"

// genesisHash is the prev_hash of the chain's first row.
var genesisHash = strings.Repeat("0", 64)

// AuditHead is one link of the audit chain: a row's sequence number and
// hash. Seq 0 with an empty or zero hash means there is no row yet.
type AuditHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// AuditProblem says how the audit chain is broken.
type AuditProblem string

// The ways VerifyAudit finds the chain broken.
const (
	// AuditHashMismatch: the row's columns no longer hash to its stored
	// hash, so the row was edited.
	AuditHashMismatch AuditProblem = "hash_mismatch"
	// AuditPrevHashMismatch: the row does not point at the row before it,
	// so that row (or this one's prev_hash) was rewritten.
	AuditPrevHashMismatch AuditProblem = "prev_hash_mismatch"
	// AuditMissingRow: a sequence number is absent, so a row was deleted.
	AuditMissingRow AuditProblem = "missing_row"
	// AuditHeadMismatch: the chain's recorded head disagrees with its last
	// row.
	AuditHeadMismatch AuditProblem = "head_mismatch"
)

// AuditBreak is the first broken link VerifyAudit met.
type AuditBreak struct {
	// Seq is the sequence number of the broken row, or of the first missing
	// one.
	Seq int64 `json:"seq"`
	// ID is the broken row's id; 0 when the row is missing.
	ID      int64        `json:"id,omitempty"`
	Problem AuditProblem `json:"problem"`
	// Message says the same for people.
	Message string `json:"message"`
}

// AuditVerification is what VerifyAudit found.
type AuditVerification struct {
	// Checked counts the rows whose links held.
	Checked int64 `json:"checked"`
	// Head is the chain's head when the walk began; rows appended during
	// the walk are left to the next one.
	Head AuditHead `json:"head"`
	// Broken is the first broken link; nil when the chain is intact.
	Broken *AuditBreak `json:"broken,omitempty"`
}

// Intact reports whether every link held.
func (v AuditVerification) Intact() bool { return v.Broken == nil }

// auditPage is how many rows VerifyAudit reads per query, so that memory
// stays bounded however long the audit is.
const auditPage = 1000

// VerifyAudit walks the whole audit chain in sequence order, recomputing
// every row's hash in Go from its columns and checking that each row points
// at the one before it, that no sequence number is missing, and that the
// chain's recorded head is its last row. It trusts no database function: the
// hash the insert trigger computed is only compared with, never reused.
// A broken chain is reported in the result, not as an error.
func (s *Store) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	head, err := s.AuditHead(ctx)
	if err != nil {
		return AuditVerification{}, err
	}
	v := AuditVerification{Head: head}
	prev := genesisHash
	next := int64(1)
	for next <= head.Seq {
		rows, err := s.db.QueryContext(ctx, `
			SELECT seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash, hash, actor
			FROM audit_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3`,
			next, head.Seq, auditPage)
		if err != nil {
			return AuditVerification{}, s.fail("verify audit", err)
		}
		n, broken, err := verifyPage(rows, &next, &prev)
		if err != nil {
			return AuditVerification{}, s.fail("verify audit", err)
		}
		v.Checked += n
		if broken != nil {
			v.Broken = broken
			return v, nil
		}
		if n == 0 {
			break
		}
	}
	switch {
	case next <= head.Seq:
		v.Broken = &AuditBreak{Seq: next, Problem: AuditMissingRow,
			Message: fmt.Sprintf("rows seq %d to %d are missing: the chain's head is seq %d", next, head.Seq, head.Seq)}
	case head.Seq > 0 && prev != head.Hash:
		v.Broken = &AuditBreak{Seq: head.Seq, Problem: AuditHeadMismatch,
			Message: fmt.Sprintf("the chain's head records hash %s for seq %d, but that row's hash is %s", head.Hash, head.Seq, prev)}
	}
	return v, nil
}

// verifyPage checks the rows of one page, advancing next (the sequence
// number expected) and prev (the hash the next row must point at).
func verifyPage(rows *sql.Rows, next *int64, prev *string) (checked int64, broken *AuditBreak, err error) {
	defer rows.Close()
	for rows.Next() {
		var r auditRow
		var reqID sql.NullString
		if err := rows.Scan(&r.seq, &r.id, &reqID, &r.hold, &r.system, &r.kind, &r.attempt,
			&r.detail, &r.at, &r.prevHash, &r.hash, &r.actor); err != nil {
			return checked, nil, err
		}
		r.requestID = reqID.String
		switch {
		case r.seq != *next:
			return checked, &AuditBreak{Seq: *next, Problem: AuditMissingRow,
				Message: fmt.Sprintf("row seq %d is missing: the next row is seq %d (id %d)", *next, r.seq, r.id)}, nil
		case r.prevHash != *prev:
			return checked, &AuditBreak{Seq: r.seq, ID: r.id, Problem: AuditPrevHashMismatch,
				Message: fmt.Sprintf("row seq %d (id %d) points at hash %s, but the row before it has hash %s", r.seq, r.id, r.prevHash, *prev)}, nil
		}
		if got := r.sum(); got != r.hash {
			return checked, &AuditBreak{Seq: r.seq, ID: r.id, Problem: AuditHashMismatch,
				Message: fmt.Sprintf("row seq %d (id %d) was changed: its columns hash to %s, not to its stored hash %s", r.seq, r.id, got, r.hash)}, nil
		}
		*prev = r.hash
		*next++
		checked++
	}
	return checked, nil, rows.Err()
}

// auditRow is one row of audit_events as the chain hashes it.
type auditRow struct {
	seq, id                       int64
	requestID, hold, system, kind string
	attempt                       int64
	detail                        string
	at                            time.Time
	prevHash, hash                string
	actor                         string
}

// sum is the row's hash: SHA-256, in lower-case hex, of the netstrings
// ("<byte length>:<bytes>,") of AuditHashVersion, seq, id, request_id (""
// when NULL), hold_id, system, kind, attempt, detail, at in microseconds
// since the Unix epoch, and prev_hash; integers in decimal. A row with an
// actor names AuditHashVersionActor instead and appends the actor.
func (r auditRow) sum() string {
	version := AuditHashVersion
	if r.actor != "" {
		version = AuditHashVersionActor
	}
	fields := []string{
		version,
		strconv.FormatInt(r.seq, 10),
		strconv.FormatInt(r.id, 10),
		r.requestID,
		r.hold,
		r.system,
		r.kind,
		strconv.FormatInt(r.attempt, 10),
		r.detail,
		strconv.FormatInt(r.at.UnixMicro(), 10),
		r.prevHash,
	}
	if r.actor != "" {
		fields = append(fields, r.actor)
	}
	var b []byte
	for _, f := range fields {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
		b = append(b, ',')
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AuditHead returns the audit chain's head: the last row's sequence number
// and hash. Certificates record it, so that whoever holds one can later
// check that the audit still reaches that link.
func (s *Store) AuditHead(ctx context.Context) (AuditHead, error) {
	h, err := auditHead(ctx, s.db)
	if err != nil {
		return AuditHead{}, s.fail("read audit head", err)
	}
	return h, nil
}

func auditHead(ctx context.Context, q querier) (AuditHead, error) {
	var h AuditHead
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&h.Seq, &h.Hash)
	return h, err
}

// RequestAuditHead returns the link of a request's last audit event, the
// zero AuditHead when it has none.
func (s *Store) RequestAuditHead(ctx context.Context, requestID string) (AuditHead, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return AuditHead{}, erasureNotFound()
	}
	h, err := requestAuditHead(ctx, s.db, id)
	if err != nil {
		return AuditHead{}, s.fail("read request audit head", err)
	}
	return h, nil
}

func requestAuditHead(ctx context.Context, q querier, id uuid.UUID) (AuditHead, error) {
	var h AuditHead
	err := q.QueryRowContext(ctx, `
		SELECT seq, hash FROM audit_events WHERE request_id = $1 ORDER BY seq DESC LIMIT 1`, id,
	).Scan(&h.Seq, &h.Hash)
	if err == sql.ErrNoRows {
		return AuditHead{}, nil
	}
	return h, err
}

// AuditLinkAt returns the link of the audit row with sequence number seq,
// with found false when there is none, so that the anchors a certificate
// recorded can be looked up in the chain.
func (s *Store) AuditLinkAt(ctx context.Context, seq int64) (AuditHead, bool, error) {
	h := AuditHead{Seq: seq}
	err := s.db.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE seq = $1`, seq).Scan(&h.Hash)
	if err == sql.ErrNoRows {
		return AuditHead{}, false, nil
	}
	if err != nil {
		return AuditHead{}, false, s.fail("read audit link", err)
	}
	return h, true, nil
}
