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

	"github.com/lethe-dev/lethe"
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

With --bulk N and one --k K, it first submits one bulk erasure of N
synthetic subjects to K systems that take batch commands, streamed as
NDJSON, and measures subjects/s from submission to the batch's final
status, then runs the per-request measurement at the same K and prints
the ratio of the two ("bulk" in --json).

Flags:
`

// runBench runs `lethe bench`.
func runBench(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	opts, err := parseBench(args, env, stderr)
	if err != nil {
		return err
	}
	if opts.cpuProfile != "" {
		stop, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	report, err := bench.Run(ctx, opts.cfg)
	if err != nil {
		return err
	}
	if opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return report.WriteText(stdout)
}

// benchOptions are `lethe bench`'s command line: the benchmark's
// configuration and how to print its report.
type benchOptions struct {
	cfg        bench.Config
	json       bool
	cpuProfile string
}

// parseBench reads `lethe bench`'s flags into a configuration it has
// checked.
func parseBench(args []string, env func(string) string, stderr io.Writer) (benchOptions, error) {
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
		ks          = fs.String("k", "1,5,20", "comma-separated fan-outs: systems per request (with --bulk, one)")
		n           = fs.Int("n", 0, fmt.Sprintf("erasures (and baseline operations) per measurement (0: %d at K=1, %d otherwise)", bench.DefaultNSingle, bench.DefaultN))
		bulk        = fs.Int("bulk", 0, fmt.Sprintf("also measure one bulk erasure of this many subjects (at most %d) at the one --k, next to one request per subject", lethe.MaxBatchSubjects))
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
		return benchOptions{}, err
	}
	if fs.NArg() > 0 {
		return benchOptions{}, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	kList, err := parseKs(*ks)
	if err != nil {
		return benchOptions{}, err
	}
	switch {
	case *bulk < 0 || *bulk > lethe.MaxBatchSubjects:
		return benchOptions{}, fmt.Errorf("bench: --bulk %d: want from 1 to %d subjects", *bulk, lethe.MaxBatchSubjects)
	case *bulk > 0 && len(kList) != 1:
		return benchOptions{}, errors.New("bench: --bulk measures one fan-out: give one --k, such as --k 5")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return benchOptions{}, fmt.Errorf("bench: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	cfg := bench.Config{
		Ks:          kList,
		N:           *n,
		Bulk:        *bulk,
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
	return benchOptions{cfg: cfg, json: *asJSON, cpuProfile: *cpuProfile}, nil
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
