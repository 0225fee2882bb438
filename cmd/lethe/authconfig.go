package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/internal/roles"
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

// apiAccess is who may call the API that listens on LETHE_HTTP_ADDR:
// LETHE_AUTH=on (the default) checks every credential through the Chain,
// LETHE_AUTH=off serves anyone and says so at start. An API on loopback
// answers only loopback Host names, so that a web page cannot reach it by
// rebinding its own DNS name.
func (c *config) apiAccess(ctx context.Context, tokens auth.TokenStore, dev bool, log *slog.Logger) (roles.Access, authSettings, error) {
	var acc roles.Access
	if api.IsLoopback(c.HTTPAddr) {
		acc.AllowedHosts = api.LoopbackHosts
	}
	switch strings.ToLower(strings.TrimSpace(c.Auth)) {
	case "on", "":
	case "off":
		log.Warn("LETHE_AUTH=off: the API serves every route to anyone and records them as anonymous; never expose it")
		acc.AuthOff = true
		return acc, authSettings{}, nil
	default:
		return roles.Access{}, authSettings{}, fmt.Errorf("LETHE_AUTH %q: want on or off", c.Auth)
	}
	as, err := c.authSettings(ctx, tokens, dev, log)
	if err != nil {
		return roles.Access{}, authSettings{}, err
	}
	acc.Auth = as.chain
	if as.limiter != nil {
		acc.Limiter = as.limiter
	}
	return acc, as, nil
}

// warnIfNoCredential tells an operator whose API nobody can call yet how to
// make the first credential.
func warnIfNoCredential(ctx context.Context, c *config, store interface {
	ListTokens(ctx context.Context) ([]auth.TokenRecord, error)
}, log *slog.Logger) error {
	if c.OIDCIssuer != "" || strings.EqualFold(c.Auth, "off") {
		return nil
	}
	tokens, err := store.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("read the tokens table (has lethe migrate run?): %w", err)
	}
	for _, t := range tokens {
		if t.RevokedAt == nil && (t.ExpiresAt == nil || t.ExpiresAt.After(time.Now())) {
			return nil
		}
	}
	log.Warn("no credential can call the API yet: create one with `lethe token create --name NAME --scopes ...`, or set LETHE_OIDC_ISSUER")
	return nil
}

// codecAccess is who may decode through `lethe codec`: OIDC access tokens
// when LETHE_OIDC_ISSUER is set, Lethe tokens when LETHE_DATABASE_URL is set
// in the environment. Without either, or with LETHE_AUTH=off, the endpoint
// serves anyone and may listen on loopback only.
func (c *config) codecAccess(ctx context.Context, tokens auth.TokenStore, log *slog.Logger) (codec.Access, error) {
	open := strings.EqualFold(strings.TrimSpace(c.Auth), "off") || (c.OIDCIssuer == "" && tokens == nil)
	if open {
		if !api.IsLoopback(c.CodecAddr) {
			return codec.Access{}, fmt.Errorf("LETHE_CODEC_ADDR %s is not loopback, and no authentication is configured: set LETHE_OIDC_ISSUER (and LETHE_OIDC_AUDIENCE) or LETHE_DATABASE_URL for Lethe tokens, or listen on 127.0.0.1", c.CodecAddr)
		}
		log.Warn("the codec endpoint decodes for anyone who reaches it: it listens on loopback only")
		return codec.Access{Log: log}, nil
	}
	as, err := c.authSettings(ctx, tokens, false, log)
	if err != nil {
		return codec.Access{}, err
	}
	return codec.Access{Verifier: as.chain, Log: log}, nil
}
