package auth_test

import (
	"context"
	"testing"

	"github.com/lethe-dev/lethe/auth"
)

// fixedVerifier answers one principal for any credential and counts calls.
type fixedVerifier struct {
	p     auth.Principal
	calls int
}

func (f *fixedVerifier) Verify(context.Context, string) (auth.Principal, error) {
	f.calls++
	return f.p, nil
}

func TestChain(t *testing.T) {
	const devToken = "lethe_dev_local"
	dev, _ := auth.NewDevVerifier(devToken)
	lethe, _ := auth.NewToken()
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2ln"

	for _, tc := range []struct {
		name       string
		chain      func(tokens, oidc *fixedVerifier) *auth.Chain
		credential string
		want       string // subject; empty for a refusal
		reason     string
	}{
		{"dev token", full, devToken, "dev", ""},
		{"lethe token", full, lethe, "token:t", ""},
		{"jwt", full, jwt, "ada", ""},
		{"empty", full, "", "", "no credential"},
		{"other shape", full, "Basic dXNlcjpwYXNz", "", "neither a lethe token nor a JWT"},
		{"two parts", full, "abc.def", "", "neither a lethe token nor a JWT"},
		{"unsigned jwt", full, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ.", "", "neither a lethe token nor a JWT"},
		{"jwt without oidc", func(tk, _ *fixedVerifier) *auth.Chain { return &auth.Chain{Dev: dev, Tokens: tk} },
			jwt, "", "no OIDC issuer is configured"},
		{"lethe token without a store", func(_, o *fixedVerifier) *auth.Chain { return &auth.Chain{OIDC: o} },
			lethe, "", "lethe tokens are not accepted here"},
		{"dev token without dev", func(tk, o *fixedVerifier) *auth.Chain { return &auth.Chain{Tokens: tk, OIDC: o} },
			"not-a-lethe-dev-token", "", "neither a lethe token nor a JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens := &fixedVerifier{p: auth.Principal{Subject: "token:t", Kind: auth.KindToken}}
			oidc := &fixedVerifier{p: auth.Principal{Subject: "ada", Kind: auth.KindOIDC}}
			p, err := tc.chain(tokens, oidc).Verify(t.Context(), tc.credential)
			if tc.want == "" {
				wantRefused(t, err, tc.credential, tc.reason)
				if tokens.calls+oidc.calls != 0 {
					t.Errorf("a refused credential reached a verifier (%d token, %d oidc calls)", tokens.calls, oidc.calls)
				}
				return
			}
			if err != nil || p.Subject != tc.want {
				t.Fatalf("Verify = %+v, %v; want %s", p, err, tc.want)
			}
			if calls := tokens.calls + oidc.calls; tc.want == "dev" && calls != 0 {
				t.Errorf("the dev token reached another verifier")
			}
		})
	}
}

func full(tokens, oidc *fixedVerifier) *auth.Chain {
	dev, _ := auth.NewDevVerifier("lethe_dev_local")
	return &auth.Chain{Dev: dev, Tokens: tokens, OIDC: oidc}
}

// TestChainDevTokenFallsThrough checks that a "lethe_" credential that is
// not the dev token still reaches the token store.
func TestChainDevTokenFallsThrough(t *testing.T) {
	dev, _ := auth.NewDevVerifier("lethe_dev_local")
	tokens := &fixedVerifier{p: auth.Principal{Subject: "token:t"}}
	p, err := (&auth.Chain{Dev: dev, Tokens: tokens}).Verify(t.Context(), "lethe_dev_other")
	if err != nil || p.Subject != "token:t" || tokens.calls != 1 {
		t.Errorf("Verify = %+v, %v (%d store calls); want the token store's answer", p, err, tokens.calls)
	}
}
