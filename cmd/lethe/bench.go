package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/lethe-dev/lethe/internal/bench"
	"github.com/lethe-dev/lethe/internal/kafkax"
)

const benchUsage = `Usage: lethe bench [flags]

Starts Lethe's embedded stack in this process (or drives a running Lethe
with --url), registers K synthetic systems whose connectors confirm at once,
submits N erasures through the HTTP API and prints throughput, latency,
commands/s over Kafka and peak RSS, next to baselines measured in the same
run on the same stack: an empty Temporal workflow, a naive workflow of K
activities and K signals, and raw Kafka round trips. See docs/benchmarks.md.

Flags:
`

// runBench runs `lethe bench`.
func runBench(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lethe bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	dbDefault := env("LETHE_DATABASE_URL")
	if dbDefault == "" {
		dbDefault = "postgres://postgres@127.0.0.1:5432/lethe?sslmode=disable"
	}
	var (
		ks          = fs.String("k", "1,5,20", "comma-separated fan-outs: systems per request")
		n           = fs.Int("n", 0, fmt.Sprintf("erasures (and baseline operations) per measurement (0: %d at K=1, %d otherwise)", bench.DefaultNSingle, bench.DefaultN))
		concurrency = fs.Int("concurrency", bench.DefaultConcurrency, "requests in flight")
		asJSON      = fs.Bool("json", false, "print every figure as JSON on stdout")
		apiURL      = fs.String("url", env("LETHE_API_URL"), "a running Lethe's API to drive instead of the embedded stack ($LETHE_API_URL)")
		token       = fs.String("token", env("LETHE_TOKEN"), "bearer credential for --url, with systems:read, systems:write, erasures:write and erasures:read ($LETHE_TOKEN)")
		brokers     = fs.String("kafka-brokers", env("LETHE_KAFKA_BROKERS"), "brokers of the running Lethe, for the connectors (with --url) ($LETHE_KAFKA_BROKERS)")
		dbURL       = fs.String("database-url", dbDefault, "PostgreSQL server on which the embedded stack creates a scratch database lethe_bench_… ($LETHE_DATABASE_URL)")
		keep        = fs.Bool("keep", false, "keep the scratch database and data folder")
		logLevel    = fs.String("log-level", "error", "level of the stack's own logs on stderr: debug, info, warn or error")
		rounds      = fs.Int("rounds", 0, "interleaved rounds of Lethe and the baselines (0: up to 4, each at least twice --concurrency long)")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of the whole run (go tool pprof) to this file")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	kList, err := parseKs(*ks)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("bench: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	cfg := bench.Config{
		Ks:          kList,
		N:           *n,
		Concurrency: *concurrency,
		URL:         *apiURL,
		Token:       *token,
		DatabaseURL: *dbURL,
		Keep:        *keep,
		Rounds:      *rounds,
		Progress:    stderr,
		Logger:      slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if *apiURL != "" {
		cfg.KafkaBrokers = kafkax.SplitBrokers(*brokers)
		if len(cfg.KafkaBrokers) == 0 {
			cfg.KafkaBrokers = []string{"127.0.0.1:9092"}
		}
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	report, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return report.WriteText(stdout)
}

// parseKs reads --k: whole numbers separated by commas.
func parseKs(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, err := strconv.Atoi(part)
		if err != nil || k < 1 {
			return nil, fmt.Errorf("bench: --k %q: want positive whole numbers separated by commas", s)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("bench: --k names no fan-out")
	}
	return out, nil
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
