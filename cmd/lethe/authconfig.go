package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/lethe-dev/lethe/auth"
)

// authSettings are what the API needs to authenticate callers: the
// verifier of every credential and the per-principal rate limiter.
type authSettings struct {
	chain   *auth.Chain
	limiter *auth.Limiter
	// devToken is the dev token when `lethe dev` made one; devGenerated
	// says it was generated (not from LETHE_DEV_TOKEN) and should be shown.
	devToken     string
	devGenerated bool
}

// authSettings builds the Chain from LETHE_OIDC_ISSUER/LETHE_OIDC_AUDIENCE
// and the token store, plus, for `lethe dev` (dev true), the dev token of
// LETHE_DEV_TOKEN or the data folder. An OIDC issuer that is down is not
// an error: it is logged, and discovery is retried when JWTs arrive.
func (c *config) authSettings(ctx context.Context, tokens auth.TokenStore, dev bool, log *slog.Logger) (authSettings, error) {
	var out authSettings
	out.chain = &auth.Chain{}
	if tokens != nil {
		v := auth.NewTokenVerifier(tokens)
		v.TouchFailed = func(name string, err error) {
			log.Warn("could not record a token's last use", "token", name, "err", err)
		}
		out.chain.Tokens = v
	}
	if c.OIDCIssuer != "" || c.OIDCAudience != "" {
		v, err := auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: c.OIDCIssuer, Audience: c.OIDCAudience})
		if err != nil {
			return authSettings{}, err
		}
		if err := v.Discover(ctx); err != nil {
			log.Warn("OIDC issuer unreachable; JWTs are answered 503 until it answers", "issuer", c.OIDCIssuer, "err", err)
		}
		out.chain.OIDC = v
	}
	if dev {
		dir := c.DataDir
		if c.Ephemeral {
			dir = ""
		}
		tok, generated, err := auth.DevToken(c.DevToken, dir)
		if err != nil {
			return authSettings{}, err
		}
		if out.chain.Dev, err = auth.NewDevVerifier(tok); err != nil {
			return authSettings{}, err
		}
		out.devToken, out.devGenerated = tok, generated
	} else if c.DevToken != "" {
		// Never accepted outside lethe dev; said so, so that nobody thinks
		// it works.
		log.Warn("LETHE_DEV_TOKEN is ignored: it is for lethe dev only; give services a token from lethe token create")
	}
	lim, err := c.limiter()
	if err != nil {
		return authSettings{}, err
	}
	out.limiter = lim
	return out, nil
}

// limiter parses LETHE_RATE_LIMIT and LETHE_RATE_BURST.
func (c *config) limiter() (*auth.Limiter, error) {
	r, err := strconv.ParseFloat(strings.TrimSpace(c.RateLimit), 64)
	if err != nil {
		return nil, fmt.Errorf("LETHE_RATE_LIMIT %q: want requests per second, such as 20 or 0.5, or 0 for unlimited", c.RateLimit)
	}
	lim, err := auth.NewLimiter(auth.LimiterConfig{Rate: r, Burst: c.RateBurst})
	if err != nil {
		return nil, fmt.Errorf("LETHE_RATE_LIMIT/LETHE_RATE_BURST: %w", err)
	}
	return lim, nil
}
