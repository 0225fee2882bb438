package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/internal/conformance"
)

// runConformance checks a running connector, of any language, over the
// wire (Kafka, or with --pull the HTTP pull routes it polls): one line per check, a summary, and an error (a non-zero exit) when
// any check failed. The Kafka settings are every role's.
func runConformance(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var (
		c       conformance.Command
		timeout time.Duration
		pull    bool
		pc      connectortest.PullConfig
	)
	w := &c.Wire
	cfg, err := parseConfig("conformance", args, env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.StringVar(&w.System, "system", "", "the system whose running connector to check (required)")
		fs.StringVar(&w.Topic, "topic", "", "the system's command topic (default lethe.erasure.<system>)")
		fs.StringVar(&w.IdentifierType, "type", "user_id", "the identifier type of the test subjects: one the system erases by")
		fs.StringVar(&c.SeedCommand, "seed", "", "shell command that stores data for $"+conformance.EnvSeedType+" / $"+conformance.EnvSeedValue+" in the service and exits 0; without it the checks that need data fail")
		fs.StringVar(&w.KeyID, "key-id", env(connectors.EnvKeyID), "the connector's signing credential's key id ($"+connectors.EnvKeyID+")")
		fs.StringVar(&w.Secret, "secret", "", "its hex secret (prefer $"+connectors.EnvSecret+", read when the flag is not given)")
		fs.DurationVar(&timeout, "timeout", connectortest.DefaultTimeout, "bound of each check")
		fs.BoolVar(&c.JSON, "json", false, "print the results as JSON")
		fs.BoolVar(&pull, "pull", false, "check a pull-mode connector: serve a stand-in of Lethe's pull routes on --listen for it to poll, instead of Kafka")
		fs.StringVar(&pc.Listen, "listen", "127.0.0.1:8089", "with --pull, the address to serve on: the connector's API URL is http://ADDR")
		fs.StringVar(&pc.Token, "token", "", "with --pull, the bearer token the connector presents (any non-empty string; default a random one, printed)")
	})
	if err != nil {
		return err
	}
	if w.System == "" {
		return errors.New("conformance: --system NAME is required")
	}
	if w.Secret == "" {
		// Not the flag's default, which -h would print.
		w.Secret = env(connectors.EnvSecret)
	}
	if pull {
		if pc.Token == "" {
			b := make([]byte, 16)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			pc.Token = "conformance-" + hex.EncodeToString(b)
		}
		pc.Serving = func(url string) {
			fmt.Fprintf(stderr, "serving Lethe's pull routes for %s at %s: run the connector with LETHE_API_URL=%s LETHE_TOKEN=%s\n", w.System, url, url, pc.Token)
		}
		c.Pull, w.Timeout = &pc, timeout
		return c.Run(ctx, stdout)
	}
	settings, err := cfg.kafkaSettings()
	if err != nil {
		return err
	}
	if w.TLS, w.SASL, err = settings.Load(kafkaNames); err != nil {
		return err
	}
	w.Brokers, w.Timeout = cfg.brokers(), timeout
	return c.Run(ctx, stdout)
}
