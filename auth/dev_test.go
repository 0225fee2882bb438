package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/auth"
)

func TestDevVerifier(t *testing.T) {
	v, err := auth.NewDevVerifier("lethe_dev_abc")
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(t.Context(), "lethe_dev_abc")
	if err != nil {
		t.Fatalf("Verify(dev token): %v", err)
	}
	if p.Subject != "dev" || p.Kind != auth.KindDev || !slices.Equal(p.Scopes, auth.AllScopes) {
		t.Errorf("principal = %+v, want dev with every scope", p)
	}
	for _, c := range []string{"lethe_dev_abd", "lethe_dev_ab", "lethe_dev_abcd", ""} {
		_, err := v.Verify(t.Context(), c)
		wantRefused(t, err, c, "not the dev token")
	}
	if _, err := auth.NewDevVerifier(""); err == nil {
		t.Error("NewDevVerifier accepted an empty token")
	}
}

func TestDevToken(t *testing.T) {
	t.Run("the environment wins", func(t *testing.T) {
		dir := t.TempDir()
		tok, generated, err := auth.DevToken("from-env", dir)
		if err != nil || tok != "from-env" || generated {
			t.Errorf("DevToken = %q, %v, %v; want from-env, not generated", tok, generated, err)
		}
		if _, err := os.Stat(filepath.Join(dir, auth.DevTokenFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a token from the environment was written to disk (stat: %v)", err)
		}
	})
	t.Run("generated once, then kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		first, generated, err := auth.DevToken("", dir)
		if err != nil || !generated || !strings.HasPrefix(first, auth.DevTokenPrefix) {
			t.Fatalf("DevToken = %q, %v, %v; want a generated lethe_dev_ token", first, generated, err)
		}
		info, err := os.Stat(filepath.Join(dir, auth.DevTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("dev-token mode = %o, want 600", perm)
		}
		again, generated, err := auth.DevToken("", dir)
		if err != nil || generated || again != first {
			t.Errorf("second start: DevToken = %q, %v, %v; want the same token, read back", again, generated, err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("data folder holds %d entries, want only dev-token", len(entries))
		}
	})
	t.Run("ephemeral", func(t *testing.T) {
		a, ga, err := auth.DevToken("", "")
		b, _, _ := auth.DevToken("", "")
		if err != nil || !ga || a == b || !strings.HasPrefix(a, auth.DevTokenPrefix) {
			t.Errorf("ephemeral tokens %q, %q (%v, %v): want two fresh lethe_dev_ tokens", a, b, ga, err)
		}
	})
}

// TestDevTokenMustFitAHeader checks that a LETHE_DEV_TOKEN the API could
// never receive is refused at start rather than at every call.
func TestDevTokenMustFitAHeader(t *testing.T) {
	for _, bad := range []string{"two words", `quo"te`, "comma,s", "naïve"} {
		if _, err := auth.NewDevVerifier(bad); err == nil {
			t.Errorf("NewDevVerifier(%q) accepted a token no Authorization header can carry", bad)
		}
	}
	if _, err := auth.NewDevVerifier("lethe_dev_Abc-123.x~y+z/w="); err != nil {
		t.Errorf("a token68 dev token refused: %v", err)
	}
}
