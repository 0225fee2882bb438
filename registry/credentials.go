package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
)

// IssueCredential gives an active system a new signing credential and
// returns its key id; the caller derives the secret (credential.Master).
// Every credential of the system still valid after now+overlap is cut
// back to expire then, so the system's connector has the overlap to move to
// the new secret while commands signed with the old one are still checked.
// The issue is audited in the same transaction, with actor (who asked) as
// its actor column. An unknown or retired system answers system_not_found.
func (s *Store) IssueCredential(ctx context.Context, system, actor string, overlap time.Duration) (string, error) {
	if overlap < 0 {
		return "", lethe.Errorf(lethe.KindInvalid, "invalid_overlap", "the credential overlap must not be negative")
	}
	keyID, err := credential.NewKeyID()
	if err != nil {
		return "", fmt.Errorf("issue credential: %w", err)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", s.fail("issue credential", err)
	}
	defer tx.Rollback()

	// The row lock makes two issues for one system take turns, so each
	// sees the other's credential when it cuts the older ones back.
	var found bool
	err = tx.QueryRowContext(ctx,
		`SELECT true FROM systems WHERE name = $1 AND retired_at IS NULL FOR UPDATE`, system).Scan(&found)
	if errors.Is(err, sql.ErrNoRows) {
		return "", systemNotFound(system)
	}
	if err != nil {
		return "", s.fail("issue credential", err)
	}
	cutoff := now.Add(overlap)
	if _, err := tx.ExecContext(ctx, `
		UPDATE system_credentials SET expires_at = $2
		WHERE system = $1 AND (expires_at IS NULL OR expires_at > $2)`, system, cutoff); err != nil {
		return "", s.fail("issue credential: expire older", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO system_credentials (key_id, system, created_at) VALUES ($1, $2, $3)`,
		keyID, system, now); err != nil {
		return "", s.fail("issue credential", err)
	}
	// The audit goes last: it locks the chain's head until the commit.
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		System: system, Kind: lethe.AuditCredentialIssued, Detail: "key_id=" + keyID, At: now, Actor: actor,
	}}, now); err != nil {
		return "", s.fail("issue credential: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return "", s.fail("issue credential", err)
	}
	return keyID, nil
}

// CurrentCredential returns the key id a system's messages are signed with
// now: its newest credential still valid. found is false when it has none.
func (s *Store) CurrentCredential(ctx context.Context, system string) (keyID string, found bool, err error) {
	ids, err := s.ValidCredentials(ctx, system, s.now())
	if err != nil || len(ids) == 0 {
		return "", false, err
	}
	return ids[0], true, nil
}

// ValidCredentials lists the key ids of a system's credentials valid at at,
// newest first.
func (s *Store) ValidCredentials(ctx context.Context, system string, at time.Time) ([]string, error) {
	creds, err := s.SystemCredentials(ctx, []string{system}, at)
	if err != nil {
		return nil, err
	}
	return creds[system], nil
}

// SystemCredentials answers, in one query, which of systems have ever been
// issued a credential and which of those credentials are valid at at. A
// system absent from the map has none and still works unsigned; a system
// present with an empty list has only expired ones and can sign nothing:
// once a system has credentials, its messages must be signed for good.
// Each list is ordered newest first, so its first key id is the current one.
func (s *Store) SystemCredentials(ctx context.Context, systems []string, at time.Time) (map[string][]string, error) {
	out := make(map[string][]string)
	if len(systems) == 0 {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT system, key_id, expires_at IS NULL OR expires_at > $2
		FROM system_credentials WHERE system = ANY($1)
		ORDER BY system, created_at DESC, key_id`, pq.Array(systems), at.UTC())
	if err != nil {
		return nil, s.fail("read credentials", err)
	}
	defer rows.Close()
	for rows.Next() {
		var system, keyID string
		var valid bool
		if err := rows.Scan(&system, &keyID, &valid); err != nil {
			return nil, s.fail("read credentials", err)
		}
		if _, ok := out[system]; !ok {
			out[system] = []string{}
		}
		if valid {
			out[system] = append(out[system], keyID)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("read credentials", err)
	}
	return out, nil
}
