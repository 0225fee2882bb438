package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// TokenPrefix starts every Lethe token, so that the Chain can tell one from
// a JWT by its shape and a secret scanner can find one in a leaked file.
const TokenPrefix = "lethe_"

// tokenBytes is the randomness of a token: 256 bits, so that a plain
// SHA-256 of it is as safe to keep as a salted, stretched password hash.
const tokenBytes = 32

// tokenLen is the length of a well-formed token: the prefix and 32 bytes in
// unpadded base64url.
var tokenLen = len(TokenPrefix) + base64.RawURLEncoding.EncodedLen(tokenBytes)

// NewToken returns a fresh Lethe token: "lethe_" followed by 32 random bytes
// in unpadded base64url. It is shown to its owner once; only HashToken of it
// is stored.
func NewToken() (string, error) {
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashToken returns the lowercase hex SHA-256 of token, which is what the
// token store keeps and looks tokens up by.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// wellFormedToken reports whether s has the shape NewToken gives, so that
// garbage is refused without a database round trip.
func wellFormedToken(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(s[len(TokenPrefix):])
	return err == nil
}

// TokenRecord is what the token store keeps about one Lethe token: never
// the token itself, and not its hash either, which nobody outside the store
// needs to see.
type TokenRecord struct {
	Name       string
	Scopes     []Scope
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// TokenStore is what TokenVerifier needs of the database that keeps tokens;
// *registry.Store implements it.
type TokenStore interface {
	// LookupToken returns the token whose HashToken is hash; found is false
	// when there is none. An error means the store could not answer.
	LookupToken(ctx context.Context, hash string) (rec TokenRecord, found bool, err error)
	// TouchToken records that the token whose hash is hash was used at at.
	TouchToken(ctx context.Context, hash string, at time.Time) error
}

// DefaultTouchEvery is how often TokenVerifier records that a token was
// used: once a minute is precise enough to tell an unused token from a live
// one, and keeps a busy token from writing a row on every request.
const DefaultTouchEvery = time.Minute

// TokenVerifier verifies Lethe tokens against a TokenStore. It looks every
// token up on every call and caches nothing, so a revocation takes effect on
// the next request on every replica; the lookup is one primary-key read.
type TokenVerifier struct {
	store TokenStore

	// Now is the clock that expiry and last-use are measured with; nil
	// means time.Now.
	Now func() time.Time
	// TouchEvery is how often one replica records a token's last use; zero
	// means DefaultTouchEvery.
	TouchEvery time.Duration
	// TouchFailed, when set, is told about a last-use write that failed.
	// Such a failure never fails the request: last use is bookkeeping.
	TouchFailed func(name string, err error)

	mu        sync.Mutex
	touched   map[string]time.Time // token hash → when this replica last wrote it
	lastSweep time.Time
}

// NewTokenVerifier returns a verifier of the tokens kept in store.
func NewTokenVerifier(store TokenStore) *TokenVerifier {
	return &TokenVerifier{store: store, touched: map[string]time.Time{}}
}

// Verify looks credential up by its hash and returns the principal
// "token:<name>" with the token's scopes. Unknown, expired and revoked tokens
// are refused with ErrUnauthenticated; a store that cannot answer gives an
// error that is not.
func (v *TokenVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	if !wellFormedToken(credential) {
		return Principal{}, refuse("malformed lethe token")
	}
	hash := HashToken(credential)
	rec, found, err := v.store.LookupToken(ctx, hash)
	switch {
	case err != nil:
		return Principal{}, fmt.Errorf("look up token: %w", err)
	case !found:
		return Principal{}, refuse("unknown lethe token")
	case rec.RevokedAt != nil:
		return Principal{}, refuse("lethe token " + quote(rec.Name) + " is revoked")
	}
	now := v.now()
	if rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt) {
		return Principal{}, refuse("lethe token " + quote(rec.Name) + " expired")
	}
	v.touch(ctx, hash, rec.Name, now)
	return Principal{Subject: "token:" + rec.Name, Kind: KindToken, Scopes: rec.Scopes}, nil
}

// touch records the token's use unless this replica did so less than
// TouchEvery ago. A failed write is reported, not returned.
func (v *TokenVerifier) touch(ctx context.Context, hash, name string, now time.Time) {
	every := v.TouchEvery
	if every <= 0 {
		every = DefaultTouchEvery
	}
	v.mu.Lock()
	if last, ok := v.touched[hash]; ok && now.Sub(last) < every {
		v.mu.Unlock()
		return
	}
	v.touched[hash] = now
	// Entries older than the interval decide nothing; dropping them keeps
	// the map as small as the set of tokens used in the last interval.
	if now.Sub(v.lastSweep) >= every {
		for h, at := range v.touched {
			if now.Sub(at) >= every && h != hash {
				delete(v.touched, h)
			}
		}
		v.lastSweep = now
	}
	v.mu.Unlock()
	if err := v.store.TouchToken(ctx, hash, now); err != nil && v.TouchFailed != nil {
		v.TouchFailed(name, err)
	}
}

func (v *TokenVerifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

var _ Verifier = (*TokenVerifier)(nil)
