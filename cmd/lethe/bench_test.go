package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/testenv"
)

// TestBenchJSON runs `lethe bench --k 1 --n 5 --json` on the embedded stack
// and checks that the report has every figure, each above zero: Lethe's
// (accepted and completed rates, latencies, commands/s), the three
// baselines', the ratios and the peak RSS. It asserts no speed. It also
// checks that the scratch database is gone afterwards.
func TestBenchJSON(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	before := benchDatabases(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr testenv.LogBuffer
	env := map[string]string{"LETHE_DATABASE_URL": dbURL}
	err := run(ctx, []string{"bench", "--k", "1", "--n", "5", "--concurrency", "2", "--json"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("lethe bench: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Lethe: 5/5") {
		t.Errorf("no progress line for Lethe's 5 erasures on stderr:\n%s", stderr.String())
	}

	var report map[string]any
	if err := json.Unmarshal([]byte(stdout.String()), &report); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	runs, _ := report["runs"].([]any)
	if len(runs) != 1 {
		t.Fatalf("runs = %v, want one for K=1", report["runs"])
	}
	want := []string{
		"concurrency", "peak_rss_bytes", "machine.cpus", "machine.memory_bytes",
		"runs.0.k", "runs.0.n", "runs.0.rounds",
		"runs.0.lethe.accepted_per_second", "runs.0.lethe.completed_per_second",
		"runs.0.lethe.latency_ms.p50", "runs.0.lethe.latency_ms.p95", "runs.0.lethe.latency_ms.p99",
		"runs.0.lethe.commands", "runs.0.lethe.commands_per_second",
	}
	for _, base := range []string{"empty_workflow", "naive_workflow", "raw_kafka"} {
		for _, f := range []string{"count", "per_second", "latency_ms.p50", "latency_ms.p95", "latency_ms.p99"} {
			want = append(want, "runs.0."+base+"."+f)
		}
	}
	for _, r := range []string{"erasures_vs_empty_workflow", "erasures_vs_naive_workflow", "p99_vs_naive_p50", "commands_vs_raw_kafka"} {
		want = append(want, "runs.0.ratios."+r)
	}
	got := map[string]float64{}
	numbers("", report, got)
	for _, path := range want {
		if _, ok := got[path]; !ok {
			t.Errorf("figure %s is missing", path)
		}
	}
	for path, v := range got {
		if v <= 0 {
			t.Errorf("figure %s = %v, want > 0", path, v)
		}
	}
	if n := got["runs.0.n"]; n != 5 {
		t.Errorf("n = %v, want the 5 of --n", n)
	}
	if n := got["runs.0.lethe.commands"]; n != 5 {
		t.Errorf("commands handled = %v, want 5 (one per erasure at K=1)", n)
	}

	after := benchDatabases(t, dbURL)
	for _, name := range after {
		if !slices.Contains(before, name) {
			t.Errorf("scratch database %s was left behind", name)
		}
	}
}

// numbers collects every number in a decoded JSON value by its dotted path.
func numbers(path string, v any, out map[string]float64) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch v := v.(type) {
	case float64:
		out[path] = v
	case map[string]any:
		for k, x := range v {
			numbers(join(k), x, out)
		}
	case []any:
		for i, x := range v {
			numbers(join(fmt.Sprint(i)), x, out)
		}
	}
}

// benchDatabases lists the scratch databases of `lethe bench` on the server.
func benchDatabases(t *testing.T, dbURL string) []string {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT datname FROM pg_database WHERE datname LIKE 'lethe\_bench\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

func TestParseKs(t *testing.T) {
	cases := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1,5,20", []int{1, 5, 20}, true},
		{" 100 ", []int{100}, true},
		{"1,,5", []int{1, 5}, true},
		{"", nil, false},
		{"0", nil, false},
		{"five", nil, false},
		{"1,-2", nil, false},
	}
	for _, tc := range cases {
		got, err := parseKs(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseKs(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestParseBenchBulk: --bulk N with one --k sets the bulk measurement
// next to the per-request one at that K; without --bulk the configuration
// is the one the bench always had; a --bulk that cannot work is refused
// before anything starts.
func TestParseBenchBulk(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"LETHE_DATABASE_URL": "postgres://db/x"}[k]
	}
	opts, err := parseBench([]string{"--bulk", "10000", "--k", "5", "--json"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c := opts.cfg; c.Bulk != 10000 || !slices.Equal(c.Ks, []int{5}) || !opts.json || c.DatabaseURL != "postgres://db/x" || c.Validate() != nil {
		t.Errorf("--bulk 10000 --k 5 --json: bulk %d, Ks %v, json %v, database %q, valid %v", c.Bulk, c.Ks, opts.json, c.DatabaseURL, c.Validate())
	}
	opts, err = parseBench([]string{"--n", "7"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c := opts.cfg; c.Bulk != 0 || !slices.Equal(c.Ks, []int{1, 5, 20}) || c.N != 7 || opts.json {
		t.Errorf("without --bulk: bulk %d, Ks %v, n %d, json %v; want the bench's defaults", c.Bulk, c.Ks, c.N, opts.json)
	}
	for _, args := range [][]string{
		{"--bulk", "100"},
		{"--bulk", "100", "--k", "1,5"},
		{"--bulk", "-1", "--k", "5"},
		{"--bulk", "100001", "--k", "5"},
	} {
		if _, err := parseBench(args, env, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
