package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"regexp"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
)

// tokenNameRe is what a token's name may be: it becomes the principal
// "token:<name>" that the audit records, so it stays short and printable.
var tokenNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

var tokenHashRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// NewToken is what CreateToken records: the token's hash, never the token.
type NewToken struct {
	Name string
	// Hash is auth.HashToken of the token.
	Hash   string
	Scopes []auth.Scope
	// TTL is how long the token is valid from its creation; zero means it
	// never expires.
	TTL time.Duration
	// Actor is who creates the token, recorded on its audit event.
	Actor string
}

func (t NewToken) validate() error {
	switch {
	case !tokenNameRe.MatchString(t.Name):
		return lethe.Errorf(lethe.KindInvalid, "invalid_token_name", "a token name must match %s", tokenNameRe)
	case !tokenHashRe.MatchString(t.Hash):
		return lethe.Errorf(lethe.KindInvalid, "invalid_token_hash", "a token hash is 64 lowercase hex digits")
	case len(t.Scopes) == 0:
		return lethe.Errorf(lethe.KindInvalid, "invalid_scopes", "a token needs at least one scope")
	case t.TTL < 0:
		return lethe.Errorf(lethe.KindInvalid, "invalid_ttl", "a token's time to live cannot be negative")
	}
	for _, sc := range t.Scopes {
		if _, err := auth.ParseScope(string(sc)); err != nil {
			return lethe.Errorf(lethe.KindInvalid, "invalid_scopes", "%v", err)
		}
	}
	return nil
}

const tokenColumns = `name, scopes, created_at, expires_at, revoked_at, last_used_at`

// CreateToken records a token. A name held by a token that is not revoked
// is refused (KindConflict, token_exists); an expired token keeps its name
// until it is revoked.
func (s *Store) CreateToken(ctx context.Context, in NewToken) (auth.TokenRecord, error) {
	if err := in.validate(); err != nil {
		return auth.TokenRecord{}, err
	}
	now := s.now().Truncate(time.Microsecond)
	var expires *time.Time
	if in.TTL > 0 {
		e := now.Add(in.TTL)
		expires = &e
	}
	scopes := make([]string, len(in.Scopes))
	for i, sc := range in.Scopes {
		scopes[i] = string(sc)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return auth.TokenRecord{}, s.fail("create token", err)
	}
	defer tx.Rollback()
	rec, err := scanToken(tx.QueryRowContext(ctx, `
		INSERT INTO api_tokens (token_hash, name, scopes, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		RETURNING `+tokenColumns, in.Hash, in.Name, pq.Array(scopes), now, expires))
	if pq.As(err, pqerror.UniqueViolation) != nil {
		return auth.TokenRecord{}, lethe.Errorf(lethe.KindConflict, "token_exists",
			"a token named %q exists; revoke it first", in.Name)
	}
	if err != nil {
		return auth.TokenRecord{}, s.fail("create token", err)
	}
	if err := auditToken(ctx, tx, lethe.AuditTokenCreated, rec, in.Actor, now); err != nil {
		return auth.TokenRecord{}, s.fail("create token: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return auth.TokenRecord{}, s.fail("create token", err)
	}
	return rec, nil
}

// auditToken records a token's creation or revocation in the audit chain:
// its name, scopes and expiry, never the token or its hash.
func auditToken(ctx context.Context, tx *sql.Tx, kind lethe.AuditKind, rec auth.TokenRecord, actor string, now time.Time) error {
	detail, err := json.Marshal(struct {
		Name      string       `json:"name"`
		Scopes    []auth.Scope `json:"scopes"`
		ExpiresAt *time.Time   `json:"expires_at"`
	}{rec.Name, rec.Scopes, rec.ExpiresAt})
	if err != nil {
		return err
	}
	// The audit goes last: it locks the chain's head until the commit.
	return insertAudit(ctx, tx, []lethe.AuditEvent{{Kind: kind, Detail: string(detail), At: now, Actor: actor}}, now)
}

// RevokeToken revokes the token named name that is not revoked yet, at
// once for every replica (verifiers look tokens up on every call). An
// unknown name, or one whose tokens are all revoked, is KindNotFound
// (token_not_found). The revocation is audited with actor.
func (s *Store) RevokeToken(ctx context.Context, name, actor string) (auth.TokenRecord, error) {
	if !tokenNameRe.MatchString(name) {
		return auth.TokenRecord{}, tokenNotFound(name)
	}
	now := s.now().Truncate(time.Microsecond)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return auth.TokenRecord{}, s.fail("revoke token", err)
	}
	defer tx.Rollback()
	rec, err := scanToken(tx.QueryRowContext(ctx, `
		UPDATE api_tokens SET revoked_at = $2
		WHERE name = $1 AND revoked_at IS NULL
		RETURNING `+tokenColumns, name, now))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.TokenRecord{}, tokenNotFound(name)
	}
	if err != nil {
		return auth.TokenRecord{}, s.fail("revoke token", err)
	}
	if err := auditToken(ctx, tx, lethe.AuditTokenRevoked, rec, actor, now); err != nil {
		return auth.TokenRecord{}, s.fail("revoke token: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return auth.TokenRecord{}, s.fail("revoke token", err)
	}
	return rec, nil
}

// ListTokens returns every token, revoked ones included, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]auth.TokenRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at, name`)
	if err != nil {
		return nil, s.fail("list tokens", err)
	}
	defer rows.Close()
	var out []auth.TokenRecord
	for rows.Next() {
		rec, err := scanToken(rows)
		if err != nil {
			return nil, s.fail("list tokens", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list tokens", err)
	}
	return out, nil
}

// LookupToken returns the token whose hash is hash, for auth.TokenVerifier.
func (s *Store) LookupToken(ctx context.Context, hash string) (auth.TokenRecord, bool, error) {
	rec, err := scanToken(s.db.QueryRowContext(ctx,
		`SELECT `+tokenColumns+` FROM api_tokens WHERE token_hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.TokenRecord{}, false, nil
	}
	if err != nil {
		return auth.TokenRecord{}, false, s.fail("look up token", err)
	}
	return rec, true, nil
}

// TouchToken records that the token was used at at; a later use already
// recorded (by another replica) is kept. auth.TokenVerifier calls it at
// most once a minute per token and replica.
func (s *Store) TouchToken(ctx context.Context, hash string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `
		UPDATE api_tokens SET last_used_at = $2
		WHERE token_hash = $1 AND (last_used_at IS NULL OR last_used_at < $2)`,
		hash, at.UTC().Truncate(time.Microsecond))
	if err != nil {
		return s.fail("touch token", err)
	}
	return nil
}

var _ auth.TokenStore = (*Store)(nil)

func scanToken(row scanner) (auth.TokenRecord, error) {
	var (
		rec                        auth.TokenRecord
		scopes                     []string
		expires, revoked, lastUsed sql.NullTime
	)
	if err := row.Scan(&rec.Name, pq.Array(&scopes), &rec.CreatedAt, &expires, &revoked, &lastUsed); err != nil {
		return auth.TokenRecord{}, err
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	for _, sc := range scopes {
		rec.Scopes = append(rec.Scopes, auth.Scope(sc))
	}
	rec.ExpiresAt = utcPtr(expires)
	rec.RevokedAt = utcPtr(revoked)
	rec.LastUsedAt = utcPtr(lastUsed)
	return rec, nil
}

func tokenNotFound(name string) error {
	return lethe.Errorf(lethe.KindNotFound, "token_not_found", "no active token named %q", name)
}
