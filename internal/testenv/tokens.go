package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

// Token creates a Lethe token called name with scopes in store, as `lethe
// token create` does, and returns the token for an Authorization header.
func Token(t testing.TB, store *registry.Store, name string, scopes ...auth.Scope) string {
	t.Helper()
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatalf("testenv: new token: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := store.CreateToken(ctx, registry.NewToken{Name: name, Hash: auth.HashToken(tok), Scopes: scopes}); err != nil {
		t.Fatalf("testenv: create token %s: %v", name, err)
	}
	return tok
}
