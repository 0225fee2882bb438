package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/codec"
)

// runCodec serves the codec endpoint on its own, so that an operator who
// holds LETHE_CODEC_KEYS can point a deployed Temporal Web UI at it (often
// from their own machine) and read payloads decrypted, while the UI server
// and Temporal never see a key.
func runCodec(ctx context.Context, cfg *config, log *slog.Logger) error {
	keys, err := cfg.codecKeys()
	if err != nil {
		return err
	}
	if keys == nil {
		return errors.New("LETHE_CODEC_KEYS is not set: the codec endpoint needs the keys the payloads were encrypted with")
	}
	var origins []string
	for o := range strings.SplitSeq(cfg.CodecOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	if len(origins) == 0 {
		return errors.New("LETHE_CODEC_ORIGINS is not set: give the Temporal Web UI's origin, e.g. https://temporal.example.com")
	}
	// Lethe tokens are read from PostgreSQL only when the operator named
	// the database: a codec endpoint on a laptop usually has none.
	var tokens auth.TokenStore
	if cfg.DatabaseNamed {
		store, err := cfg.openStore(ctx)
		if err != nil {
			return err
		}
		defer store.Close()
		tokens = store
	}
	access, err := cfg.codecAccess(ctx, tokens, log)
	if err != nil {
		return err
	}
	ln, err := listen(cfg.CodecAddr, "codec")
	if err != nil {
		return err
	}
	log.Info("codec endpoint listening", "addr", ln.Addr().String(), "origins", origins,
		"active_key_id", keys.ActiveID(), "authenticated", access.Verifier != nil)
	return serveHTTP(ctx, ln, codec.Handler(keys, origins, access))
}
