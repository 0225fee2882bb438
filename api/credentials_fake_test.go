package api_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lethe-dev/lethe/auth"
)

// allScopesToken is the credential every harness call carries by default.
const allScopesToken = "lethe_all-scopes"

// fakeVerifier maps bearer credentials to principals; any other credential
// is refused, and unavailable makes every check fail as an unreachable
// token store would.
type fakeVerifier struct {
	principals  map[string]auth.Principal
	unavailable bool
}

func (v *fakeVerifier) Verify(_ context.Context, credential string) (auth.Principal, error) {
	if v.unavailable {
		return auth.Principal{}, errors.New("token store unreachable")
	}
	p, ok := v.principals[credential]
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: unknown credential", auth.ErrUnauthenticated)
	}
	return p, nil
}

// testCredentials holds one principal with every scope and, for each scope,
// a principal that has every scope but that one ("lethe_all-but-<scope>").
var testCredentials = func() *fakeVerifier {
	v := &fakeVerifier{principals: map[string]auth.Principal{
		allScopesToken: {Subject: "token:all", Kind: auth.KindToken, Scopes: auth.AllScopes},
	}}
	for _, missing := range auth.AllScopes {
		var scopes []auth.Scope
		for _, s := range auth.AllScopes {
			if s != missing {
				scopes = append(scopes, s)
			}
		}
		v.principals[allButToken(missing)] = auth.Principal{Subject: "token:all-but-" + string(missing), Kind: auth.KindToken, Scopes: scopes}
	}
	return v
}()

// allButToken is the test credential that lacks exactly scope.
func allButToken(scope auth.Scope) string {
	return "lethe_all-but-" + strings.ReplaceAll(string(scope), ":", "-")
}

// clone copies v, so that a harness may add principals of its own.
func (v *fakeVerifier) clone() *fakeVerifier {
	c := &fakeVerifier{principals: map[string]auth.Principal{}, unavailable: v.unavailable}
	for k, p := range v.principals {
		c.principals[k] = p
	}
	return c
}
