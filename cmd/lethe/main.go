// Command lethe is Lethe's one binary. Each role is a subcommand: the HTTP
// API, the Temporal worker, the confirmation relay, the migrator, and `dev`,
// which runs all of them on one machine with an embedded Temporal server,
// Web UI and Kafka-protocol broker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `lethe: erase a data subject from every service that holds it.

Usage: lethe <command> [flags]

Commands:
  dev       everything on one machine: embedded Temporal (+ Web UI), Kafka broker, API, worker, relay
  api       the HTTP API
  worker    the Temporal worker (workflows and activities)
  relay     the confirmation consumer that signals workflows
  migrate   apply the embedded PostgreSQL migrations
  token     lethe token <create|revoke|list>: the API tokens of services and scripts
  codec     the codec endpoint alone, for a Temporal Web UI to show encrypted payloads decrypted
  audit     lethe audit verify: check the hash-chained audit in PostgreSQL
  certificate
            lethe certificate verify (--public-key KEY | --keys-url URL) [--proof PROOF]... FILE:
            check a certificate of erasure, or a batch's and its subjects' inclusion proofs, offline
  connector run a reference connector: lethe connector <postgres|webhook> --config FILE
  conformance
            lethe conformance --system NAME [--seed CMD] [--key-id ID]: check a running
            connector of any language over Kafka; PASS/FAIL per check, non-zero on a failure;
            --pull --listen ADDR checks a pull-mode connector polling ADDR instead
  bench     measure end-to-end erasures next to raw Temporal and Kafka baselines
  version   print the version

API client (reads $LETHE_API_URL, default http://127.0.0.1:8080, and $LETHE_TOKEN):
  erasures  lethe erasures <create|get|list|cancel|extend|retry>: submit and follow erasure requests
  batches   lethe batches <submit|get|list|subjects|cancel|retry>: bulk erasures of up to
            100,000 subjects from a file of one JSON subject per line, with progress and ETA
  systems   lethe systems <list|get|stats|put|retire>: the registry of systems and their health
  holds     lethe holds <list|get|put|lift>: legal holds
  Tables by default, the API's JSON with --json. Exit status: 0 ok; 1 bad
  command line; 2 the API refused the call (4xx); 3 the API is unreachable
  or failing (5xx); 4 --wait saw the request or batch end failed or canceled.

Run 'lethe <command> -h' for a command's flags. Every flag mirrors an
environment variable: the README's Configuration section lists them all.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], osEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Stderr))
}

// run dispatches to a role. It returns the error that stopped the role, on
// one line; a canceled context (SIGINT, SIGTERM) is a clean stop.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	return oneLine(runRole(ctx, args, env, stdout, stderr))
}

// lineError is an error whose message was folded onto one line, so that
// whoever reads the terminal or a log collector sees why Lethe stopped in
// one line even when a library's message spans several (YAML errors do).
type lineError struct{ err error }

func (e lineError) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(e.err.Error(), "\n", "; ")), " ")
}

func (e lineError) Unwrap() error { return e.err }

func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return lineError{err}
}

func runRole(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	role, rest := args[0], args[1:]
	switch role {
	case "version", "--version":
		fmt.Fprintln(stdout, "lethe", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "bench":
		err := runBench(ctx, rest, env, stdout, stderr)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	case "audit":
		return runAudit(ctx, rest, env, stdout, stderr)
	case "token":
		return runToken(ctx, rest, env, stdout, stderr)
	case "erasures":
		return runErasures(ctx, rest, env, stdout, stderr)
	case "batches":
		return runBatches(ctx, rest, env, os.Stdin, stdout, stderr)
	case "systems":
		return runSystems(ctx, rest, env, stdout, stderr)
	case "holds":
		return runHolds(ctx, rest, env, stdout, stderr)
	case "certificate":
		return runCertificate(ctx, rest, stdout, stderr)
	case "conformance":
		return runConformance(ctx, rest, env, stdout, stderr)
	case "connector":
		err := runConnectorRole(ctx, rest, env, stderr)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	}
	var extra func(*flag.FlagSet, *config)
	if role == "dev" {
		extra = devFlags
	}
	cfg, err := parseConfig(role, rest, env, stderr, extra)
	if err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	var roleErr error
	switch role {
	case "migrate":
		roleErr = runMigrate(ctx, cfg, log, stdout)
	case "api":
		roleErr = runAPI(ctx, cfg, log)
	case "worker":
		roleErr = runWorker(ctx, cfg, log)
	case "relay":
		roleErr = runRelay(ctx, cfg, log)
	case "dev":
		roleErr = runDev(ctx, cfg, log, stdout)
	case "codec":
		roleErr = runCodec(ctx, cfg, log)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", role)
	}
	if errors.Is(roleErr, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return roleErr
}
