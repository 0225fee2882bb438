package auth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wantRefused fails the test unless err refuses the credential (401) for a
// reason that mentions reason, without quoting the credential.
func wantRefused(t *testing.T, err error, credential, reason string) {
	t.Helper()
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v, want ErrUnauthenticated (%s)", err, reason)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("err = %q, want the reason %q", err, reason)
	}
	if credential != "" && strings.Contains(err.Error(), credential) {
		t.Errorf("err = %q quotes the credential", err)
	}
}

// createToken stores a fresh token in s and returns it.
func createToken(t *testing.T, s *registry.Store, name string, ttl time.Duration, scopes ...auth.Scope) string {
	t.Helper()
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(testContext(t), registry.NewToken{Name: name, Hash: auth.HashToken(tok), Scopes: scopes, TTL: ttl}); err != nil {
		t.Fatalf("CreateToken %s: %v", name, err)
	}
	return tok
}

func TestNewTokenShape(t *testing.T) {
	a, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := auth.NewToken()
	if !strings.HasPrefix(a, "lethe_") || len(a) != len("lethe_")+43 || strings.ContainsAny(a, "=+/") {
		t.Errorf("token %q is not lethe_ + 43 base64url characters", a)
	}
	if a == b {
		t.Error("two tokens are equal")
	}
	if h := auth.HashToken(a); len(h) != 64 || h == auth.HashToken(b) {
		t.Errorf("HashToken = %q, want 64 hex digits, distinct per token", h)
	}
}

func TestTokenVerifier(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	clk := newClock()
	store.Now = clk.Now
	v := auth.NewTokenVerifier(store)
	v.Now = clk.Now

	ci := createToken(t, store, "ci", time.Hour, auth.ErasuresWrite, auth.SystemsRead)
	p, err := v.Verify(ctx, ci)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Subject != "token:ci" || p.Kind != auth.KindToken || !slices.Equal(p.Scopes, []auth.Scope{auth.ErasuresWrite, auth.SystemsRead}) {
		t.Errorf("principal = %+v, want token:ci with its two scopes", p)
	}

	other, _ := auth.NewToken()
	_, err = v.Verify(ctx, other)
	wantRefused(t, err, other, "unknown lethe token")
	_, err = v.Verify(ctx, ci[:len(ci)-1])
	wantRefused(t, err, ci[:len(ci)-1], "malformed")
	_, err = v.Verify(ctx, ci+"A")
	wantRefused(t, err, ci, "malformed")

	t.Run("expired", func(t *testing.T) {
		clk.Advance(time.Hour - time.Second)
		if _, err := v.Verify(ctx, ci); err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}
		clk.Advance(time.Second)
		_, err := v.Verify(ctx, ci)
		wantRefused(t, err, ci, "expired")
	})

	t.Run("revoked", func(t *testing.T) {
		tok := createToken(t, store, "script", 0, auth.HoldsRead)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify before revoking: %v", err)
		}
		if _, err := store.RevokeToken(ctx, "script", "test"); err != nil {
			t.Fatal(err)
		}
		_, err := v.Verify(ctx, tok)
		wantRefused(t, err, tok, "revoked")
	})
}

// TestTokenRevokedOnEveryReplica revokes a token through one store and
// checks that a verifier on a separate pool, as another API replica has,
// refuses it on its very next call.
func TestTokenRevokedOnEveryReplica(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, url := testenv.Postgres(t)
	open := func() *registry.Store {
		s, err := registry.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	admin, replicaA, replicaB := open(), open(), open()
	tok := createToken(t, admin, "deploy", 0, auth.SystemsWrite)
	va, vb := auth.NewTokenVerifier(replicaA), auth.NewTokenVerifier(replicaB)
	for _, v := range []*auth.TokenVerifier{va, vb} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify before revoking: %v", err)
		}
	}
	if _, err := admin.RevokeToken(ctx, "deploy", "test"); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*auth.TokenVerifier{"replica A": va, "replica B": vb} {
		_, err := v.Verify(ctx, tok)
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s after revocation: err = %v, want ErrUnauthenticated", name, err)
		}
	}
}

func TestTokenLastUsedThrottled(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	clk := newClock()
	store.Now = clk.Now
	counting := &countingStore{TokenStore: store}
	v := auth.NewTokenVerifier(counting)
	v.Now = clk.Now
	tok := createToken(t, store, "busy", 0, auth.ErasuresRead)
	start := clk.Now()

	lastUsed := func() time.Time {
		t.Helper()
		rec, _, err := store.LookupToken(ctx, auth.HashToken(tok))
		if err != nil || rec.LastUsedAt == nil {
			t.Fatalf("last_used_at = %v, %v; want set", rec.LastUsedAt, err)
		}
		return *rec.LastUsedAt
	}
	verify := func() {
		t.Helper()
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}

	verify()
	if got := lastUsed(); !got.Equal(start) {
		t.Errorf("after the first use last_used_at = %v, want %v", got, start)
	}
	for range 5 {
		clk.Advance(10 * time.Second)
		verify()
	}
	if got := lastUsed(); !got.Equal(start) {
		t.Errorf("50s later last_used_at = %v, want still %v", got, start)
	}
	if n := counting.touches(); n != 1 {
		t.Errorf("%d last-use writes in 50s, want 1", n)
	}
	clk.Advance(10 * time.Second)
	verify()
	if got := lastUsed(); !got.Equal(start.Add(time.Minute)) {
		t.Errorf("a minute later last_used_at = %v, want %v", got, start.Add(time.Minute))
	}
	if n := counting.touches(); n != 2 {
		t.Errorf("%d last-use writes in a minute, want 2", n)
	}
}

// countingStore counts last-use writes, and fails them when failTouch is set.
type countingStore struct {
	auth.TokenStore
	mu        sync.Mutex
	n         int
	failTouch bool
}

func (c *countingStore) TouchToken(ctx context.Context, hash string, at time.Time) error {
	c.mu.Lock()
	c.n++
	fail := c.failTouch
	c.mu.Unlock()
	if fail {
		return errors.New("database is read-only")
	}
	return c.TokenStore.TouchToken(ctx, hash, at)
}

func (c *countingStore) touches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestTokenTouchFailureDoesNotRefuse(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	tok := createToken(t, store, "ro", 0, auth.ErasuresRead)
	v := auth.NewTokenVerifier(&countingStore{TokenStore: store, failTouch: true})
	var reported []string
	v.TouchFailed = func(name string, err error) { reported = append(reported, name) }
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("Verify with a failing last-use write: %v", err)
	}
	if !slices.Equal(reported, []string{"ro"}) {
		t.Errorf("reported failures = %v, want [ro]", reported)
	}
}

func TestTokenStoreDownIsNotARefusal(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, url := testenv.Postgres(t)
	store, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tok := createToken(t, store, "any", 0, auth.ErasuresRead)
	store.Close()
	_, err = auth.NewTokenVerifier(store).Verify(ctx, tok)
	if err == nil || errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("err = %v, want an error that is not ErrUnauthenticated (503)", err)
	}
}
