package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/apicall"
	"github.com/lethe-dev/lethe/internal/apiclient"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/internal/testtemporal"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// clientRig is a whole Lethe served over HTTP, as `lethe dev` wires it
// (API, worker and relay over PostgreSQL, a Temporal test server and a
// Kafka-protocol broker), for the API client commands to call.
type clientRig struct {
	t     *testing.T
	ctx   context.Context
	URL   string
	Token string // every scope
	Store *registry.Store
	brok  []string
	log   *slog.Logger
	wg    sync.WaitGroup
	// printed is everything every command printed, for the check that
	// none repeats an identifier value.
	printed strings.Builder
}

func newClientRig(t *testing.T) *clientRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &clientRig{t: t, ctx: ctx, log: slog.New(slog.DiscardHandler)}
	db, _ := testenv.Postgres(t)
	r.Store = registry.New(db)
	r.brok, _ = testenv.Kafka(t, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
	tc, ns := testtemporal.Start(t)
	dg, err := digest.New(bytes.Repeat([]byte{7}, digest.MinKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	r.Token = testenv.Token(t, r.Store, "cli-admin", auth.AllScopes...)
	deps := roles.Deps{
		Store: r.Store, Temporal: tc, Namespace: ns, Brokers: r.brok, Partitions: 1,
		Logger: r.log, Digester: dg,
		Access: roles.Access{Auth: &auth.Chain{Tokens: auth.NewTokenVerifier(r.Store)}},
	}
	r.goRun("worker", func(ctx context.Context) error { return roles.RunWorker(ctx, deps) })
	r.goRun("relay", func(ctx context.Context) error { return roles.RunRelay(ctx, deps) })
	h, err := roles.APIHandler(deps)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	r.URL = hs.URL
	t.Cleanup(func() {
		hs.Close()
		cancel()
		r.wg.Wait()
	})
	return r
}

func (r *clientRig) goRun(name string, run func(context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := run(r.ctx); err != nil && !errors.Is(err, context.Canceled) && r.ctx.Err() == nil {
			r.t.Errorf("%s stopped: %v", name, err)
		}
	}()
}

// connector answers system's commands with result.
func (r *clientRig) connector(system string, result connectors.Result) {
	r.connectorWith(system, connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return result, nil
	}))
}

// connectorWith serves system's commands with h.
func (r *clientRig) connectorWith(system string, h connectors.Handler) {
	cfg := connectors.Config{Brokers: r.brok, System: system, Logger: r.log}
	r.goRun("connector "+system, func(ctx context.Context) error { return connectors.Run(ctx, cfg, h) })
}

// cliResult is what one lethe command printed and its exit status, as
// main would have exited.
type cliResult struct {
	stdout, stderr string
	code           int
}

// lethe runs the command in-process with env as its environment.
func (r *clientRig) lethe(env map[string]string, args ...string) cliResult {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	code := report(err, &errOut)
	r.printed.WriteString(out.String() + errOut.String())
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// env is the environment of a caller holding token.
func (r *clientRig) env(token string) map[string]string {
	return map[string]string{"LETHE_API_URL": r.URL, "LETHE_TOKEN": token}
}

// apiJSON is the API's own answer to GET path, decoded generically.
func (r *clientRig) apiJSON(path string) any {
	r.t.Helper()
	resp, err := apicall.Do(r.ctx, r.URL, http.MethodGet, path, nil, "", "Authorization", "Bearer "+r.Token)
	if err != nil || resp.Status != http.StatusOK {
		r.t.Fatalf("GET %s = %d %s, %v", path, resp.Status, resp.Body, err)
	}
	var v any
	resp.Decode(r.t, &v)
	return v
}

// mustJSON decodes a command's stdout, failing unless it is valid JSON.
func mustJSON(t *testing.T, res cliResult) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, res.stdout)
	}
	return v
}

// wantOK fails the test unless the command exited 0.
func wantOK(t *testing.T, what string, res cliResult) {
	t.Helper()
	if res.code != exitOK {
		t.Fatalf("%s: exit %d, stderr %q", what, res.code, res.stderr)
	}
}

// tableRow finds the row of a table whose first cell is key and returns
// its cells under the columns cols, checking that each cell starts where
// its column's name does in the header: the table is aligned.
func tableRow(t *testing.T, out, key string, cols ...string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	var row string
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, key+" ") {
			row = l
		}
	}
	if row == "" {
		t.Fatalf("no row %q in\n%s", key, out)
	}
	var cells []string
	for i, col := range cols {
		start := strings.Index(header, col)
		if start < 0 {
			t.Fatalf("no column %q in header %q", col, header)
		}
		end := len(row)
		if i+1 < len(cols) {
			end = strings.Index(header, cols[i+1])
		}
		if start > 0 && row[start-1] != ' ' || (start < len(row) && row[start] == ' ') {
			t.Fatalf("column %q not aligned in\n%s\n%s", col, header, row)
		}
		cells = append(cells, strings.TrimSpace(row[start:min(end, len(row))]))
	}
	return cells
}

// field returns the value of NAME in a command's NAME value listing.
func field(t *testing.T, out, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `  +(.*)$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no field %s in\n%s", name, out)
	}
	return strings.TrimSpace(m[1])
}

// TestClientCommandsAgainstAPI drives `lethe systems|erasures|holds`
// against a running API: tables, --json as the API answers, --wait's
// progress, and the one-line errors and exit statuses.
func TestClientCommandsAgainstAPI(t *testing.T) {
	r := newClientRig(t)
	admin := r.env(r.Token)
	const email, userID = "grace@example.org", "u-cli-1"

	// Systems: put, list (table and JSON), get.
	res := r.lethe(admin, "systems", "put", "crm", "--identifiers", "email,user_id", "--owner", "team-crm", "--confirm-within", "1h")
	wantOK(t, "systems put", res)
	if got := field(t, res.stdout, "TOPIC"); got != "lethe.erasure.crm" {
		t.Errorf("systems put: TOPIC %q, want the default lethe.erasure.crm", got)
	}
	res = r.lethe(admin, "systems", "put", "billing", "--identifiers", "account_id", "--batch", "--after", "crm")
	wantOK(t, "systems put", res)
	if got := field(t, res.stdout, "BATCH"); got != "true" {
		t.Errorf("systems put --batch: BATCH %q, want true", got)
	}
	if got := field(t, res.stdout, "AFTER"); got != "crm" {
		t.Errorf("systems put --after crm: AFTER %q, want crm", got)
	}
	res = r.lethe(admin, "erasures", "plan", "--type", "email", "--type", "account_id")
	wantOK(t, "erasures plan", res)
	planCols := []string{"WAVE", "SYSTEM", "IDENTIFIERS", "AFTER"}
	if got, want := tableRow(t, res.stdout, "2", planCols...), []string{"2", "billing", "account_id", "crm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("erasures plan row = %q, want %q\n%s", got, want, res.stdout)
	}
	res = r.lethe(admin, "erasures", "plan", "--subject", "email="+email, "--json")
	wantOK(t, "erasures plan --json", res)
	if strings.Contains(res.stdout, email) || !strings.Contains(res.stdout, `"waves"`) {
		t.Errorf("erasures plan --json = %s, want the plan without the value", res.stdout)
	}
	res = r.lethe(admin, "systems", "put", "ledger", "--identifiers", "ledger_id", "--mode", "pull")
	wantOK(t, "systems put --mode pull", res)
	if got := field(t, res.stdout, "MODE"); got != "pull" {
		t.Errorf("systems put --mode pull: MODE %q, want pull", got)
	}
	res = r.lethe(admin, "systems", "list")
	wantOK(t, "systems list", res)
	cols := []string{"NAME", "IDENTIFIERS", "PRODUCES", "TOPIC", "OWNER", "CONFIRM WITHIN"}
	if got, want := tableRow(t, res.stdout, "crm", cols...), []string{"crm", "email,user_id", "-", "lethe.erasure.crm", "team-crm", "1h"}; !reflect.DeepEqual(got, want) {
		t.Errorf("systems list row = %q, want %q\n%s", got, want, res.stdout)
	}
	res = r.lethe(admin, "systems", "list", "--json")
	wantOK(t, "systems list --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/systems"); !reflect.DeepEqual(got, want) {
		t.Errorf("systems list --json = %v, want the API's %v", got, want)
	}
	res = r.lethe(admin, "systems", "get", "crm", "--json")
	wantOK(t, "systems get --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/systems/crm"); !reflect.DeepEqual(got, want) {
		t.Errorf("systems get --json = %v, want the API's %v", got, want)
	}

	// An erasure followed to its end with --wait: plain progress lines,
	// one per change, then the request's table.
	r.connector("crm", connectors.Result{Outcome: wire.OutcomeErased, Records: 2})
	res = r.lethe(admin, "erasures", "create", "--subject", "email="+email, "--subject", "user_id="+userID,
		"--reason", "gdpr_art17", "--requested-by", "ticket-1", "--wait", "--poll-interval", "20ms")
	wantOK(t, "erasures create --wait", res)
	id := field(t, res.stdout, "ID")
	if got := field(t, res.stdout, "STATUS"); got != "completed" {
		t.Errorf("erasures create --wait ended %q, want completed\n%s", got, res.stdout)
	}
	sysCols := []string{"SYSTEM", "STATUS", "ATTEMPTS", "RECORDS", "CONFIRMED", "DETAIL"}
	sysTable := res.stdout[strings.Index(res.stdout, "SYSTEM "):]
	if got := tableRow(t, sysTable, "crm", sysCols...); got[1] != "erased" || got[3] != "2" {
		t.Errorf("system row = %q, want crm erased with 2 records", got)
	}
	progress := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	lineRe := regexp.MustCompile(`^request ` + id + ` (pending|running|completed): [0-9]+/[0-9]+ systems done$`)
	for i, l := range progress {
		if !lineRe.MatchString(l) {
			t.Errorf("progress line %q is not a progress line", l)
		}
		if i > 0 && l == progress[i-1] {
			t.Errorf("progress line %q repeated: one line per change, not per poll", l)
		}
	}
	if last := progress[len(progress)-1]; last != "request "+id+" completed: 1/1 systems done" {
		t.Errorf("last progress line %q", last)
	}

	res = r.lethe(admin, "erasures", "get", id, "--json")
	wantOK(t, "erasures get --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/erasures/"+id); !reflect.DeepEqual(got, want) {
		t.Errorf("erasures get --json = %v, want the API's %v", got, want)
	}
	res = r.lethe(admin, "erasures", "list", "--status", "completed")
	wantOK(t, "erasures list", res)
	listCols := []string{"ID", "STATUS", "SYSTEMS", "SUBJECT TYPES", "CREATED", "DEADLINE", "OVERDUE", "DRY RUN"}
	if got := tableRow(t, res.stdout, id, listCols...); got[1] != "completed" || got[2] != "1/1" || got[3] != "email,user_id" || got[6] != "no" {
		t.Errorf("erasures list row = %q", got)
	}
	res = r.lethe(admin, "erasures", "list", "--json", "--limit", "10")
	wantOK(t, "erasures list --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/erasures?limit=10"); !reflect.DeepEqual(got, want) {
		t.Errorf("erasures list --json = %v, want the API's %v", got, want)
	}

	// A request whose one system fails: --wait exits 4.
	r.connector("billing", connectors.Result{Outcome: wire.OutcomeFailed, Detail: "archive offline"})
	res = r.lethe(admin, "erasures", "create", "--subject", "account_id=acc-9", "--reason", "gdpr_art17", "--wait", "--poll-interval", "20ms", "--json")
	if res.code != exitRequestFailed {
		t.Errorf("--wait on a failing request: exit %d, want %d; stderr %q", res.code, exitRequestFailed, res.stderr)
	}
	var failed lethe.Erasure
	if err := json.Unmarshal([]byte(res.stdout), &failed); err != nil || failed.Status != lethe.RequestFailed {
		t.Errorf("--wait --json printed %q (%v), want the failed request", res.stdout, err)
	}
	if !strings.HasSuffix(res.stderr, "lethe: request "+failed.ID+" ended failed: 1 of 1 systems failed\n") {
		t.Errorf("stderr %q does not end with the request's end", res.stderr)
	}

	// A system's health: get shows it, stats --json is the API's.
	res = r.lethe(admin, "systems", "get", "billing")
	wantOK(t, "systems get", res)
	if got := field(t, res.stdout, "FAILED (24H)"); got != "1" {
		t.Errorf("systems get billing: FAILED (24H) %q, want 1\n%s", got, res.stdout)
	}
	if got := field(t, res.stdout, "OPEN COMMANDS"); got != "0" {
		t.Errorf("systems get billing: OPEN COMMANDS %q, want 0", got)
	}
	res = r.lethe(admin, "systems", "get", "crm")
	wantOK(t, "systems get", res)
	if got := field(t, res.stdout, "LAST CONFIRMED"); got == "-" {
		t.Errorf("systems get crm: no last confirmation after an erasure\n%s", res.stdout)
	}
	res = r.lethe(admin, "systems", "stats", "crm", "--json")
	wantOK(t, "systems stats --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/systems/crm/stats"); !reflect.DeepEqual(got, want) {
		t.Errorf("systems stats --json = %v, want the API's %v", got, want)
	}

	// A request no connector answers: extend it, cancel it.
	wantOK(t, "systems put", r.lethe(admin, "systems", "put", "archive", "--identifiers", "archive_id"))
	res = r.lethe(admin, "erasures", "create", "--subject", "archive_id=ar-1", "--reason", "gdpr_art17", "--idempotency-key", "cli-k1")
	wantOK(t, "erasures create", res)
	open := field(t, res.stdout, "ID")
	before, _ := time.Parse(time.RFC3339, field(t, res.stdout, "DEADLINE"))
	again := r.lethe(admin, "erasures", "create", "--subject", "archive_id=ar-1", "--reason", "gdpr_art17", "--idempotency-key", "cli-k1")
	if again.code != exitOK || field(t, again.stdout, "ID") != open {
		t.Errorf("the same idempotency key answered %q (exit %d), want request %s", again.stdout, again.code, open)
	}
	res = r.lethe(admin, "erasures", "extend", open, "--by", "240h", "--reason", "complex request")
	wantOK(t, "erasures extend", res)
	if after, _ := time.Parse(time.RFC3339, field(t, res.stdout, "DEADLINE")); after.Sub(before) != 240*time.Hour {
		t.Errorf("extend --by 240h moved the deadline from %s to %s", before, after)
	}
	res = r.lethe(admin, "erasures", "cancel", open)
	wantOK(t, "erasures cancel", res)
	if got := field(t, res.stdout, "STATUS"); got != "canceled" {
		t.Errorf("cancel answered status %q", got)
	}
	if res = r.lethe(admin, "erasures", "get", open, "--wait"); res.code != exitRequestFailed {
		t.Errorf("get --wait on a canceled request: exit %d, want %d", res.code, exitRequestFailed)
	}

	// Legal holds.
	res = r.lethe(admin, "holds", "put", "case-7", "--subject", "email="+email, "--basis", "pending litigation", "--system", "crm", "--until", "2160h")
	wantOK(t, "holds put", res)
	if got := field(t, res.stdout, "ACTIVE"); got != "yes" {
		t.Errorf("holds put: ACTIVE %q", got)
	}
	res = r.lethe(admin, "holds", "list")
	wantOK(t, "holds list", res)
	holdCols := []string{"ID", "SUBJECT TYPES", "SYSTEM", "BASIS", "EXPIRES", "ACTIVE", "PLACED BY", "LIFTED"}
	if got := tableRow(t, res.stdout, "case-7", holdCols...); got[1] != "email" || got[2] != "crm" || got[3] != "pending litigation" || got[5] != "yes" || got[6] != "token:cli-admin" {
		t.Errorf("holds list row = %q", got)
	}
	res = r.lethe(admin, "holds", "list", "--json")
	wantOK(t, "holds list --json", res)
	if got, want := mustJSON(t, res), r.apiJSON("/v1/holds"); !reflect.DeepEqual(got, want) {
		t.Errorf("holds list --json = %v, want the API's %v", got, want)
	}
	res = r.lethe(admin, "holds", "lift", "case-7")
	wantOK(t, "holds lift", res)
	if got := field(t, res.stdout, "ACTIVE"); got != "no" {
		t.Errorf("holds lift: ACTIVE %q", got)
	}

	// Retiring a system.
	wantOK(t, "systems retire", r.lethe(admin, "systems", "retire", "archive"))

	// Errors: one line on stderr with the API's status and code, and the
	// exit status of a refusal, an outage or a bad command line.
	readOnly := testenv.Token(t, r.Store, "cli-reader", auth.ErasuresRead)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, tt := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		prefix string
	}{
		{"no token", r.env(""), []string{"erasures", "list"}, exitRefused, "lethe: 401 unauthenticated: "},
		{"scope missing", r.env(readOnly), []string{"erasures", "cancel", id}, exitRefused, "lethe: 403 insufficient_scope: "},
		{"--token wins over the environment", r.env(r.Token), []string{"systems", "list", "--token", readOnly}, exitRefused, "lethe: 403 insufficient_scope: "},
		{"unknown id", admin, []string{"erasures", "get", "7d444840-9dc0-11d1-b245-5ffdce74fad2"}, exitRefused, "lethe: 404 erasure_not_found: "},
		{"unknown system", admin, []string{"systems", "get", "nosuch"}, exitRefused, "lethe: 404 "},
		{"bad input", admin, []string{"erasures", "list", "--limit", "500"}, exitRefused, "lethe: 400 invalid_limit: "},
		{"conflict", admin, []string{"erasures", "cancel", id}, exitRefused, "lethe: 409 "},
		{"API down", map[string]string{"LETHE_TOKEN": r.Token}, []string{"systems", "list", "--api-url", gone.URL}, exitUnavailable, "lethe: cannot reach the API at " + gone.URL + ": "},
		{"bad command line", admin, []string{"erasures", "create", "--reason", "x"}, exitUsage, "lethe: erasures create: give at least one --subject"},
		{"malformed subject", admin, []string{"erasures", "create", "--subject", email, "--reason", "x"}, exitUsage, "lethe: erasures create: --subject number 1 must be type=value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := r.lethe(tt.env, tt.args...)
			if res.code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, tt.code, res.stderr)
			}
			if !strings.HasPrefix(res.stderr, tt.prefix) || strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line starting %q", res.stderr, tt.prefix)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q on an error", res.stdout)
			}
		})
	}

	// No command printed an identifier value back, not even in an error.
	for _, v := range []string{email, userID, "acc-9", "ar-1"} {
		if strings.Contains(r.printed.String(), v) {
			t.Errorf("the identifier value %q was printed:\n%s", v, r.printed.String())
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("erasures create: --reason is required"), exitUsage},
		{&apiclient.Error{Status: http.StatusNotFound, Code: "erasure_not_found"}, exitRefused},
		{&apiclient.Error{Status: http.StatusTooManyRequests, Code: "rate_limited"}, exitRefused},
		{&apiclient.Error{Status: http.StatusServiceUnavailable, Code: "temporal_unavailable"}, exitUnavailable},
		{&apiclient.UnreachableError{URL: "http://x", Err: errors.New("refused")}, exitUnavailable},
		{oneLine(&requestEndedError{id: "r", status: lethe.RequestCanceled}), exitRequestFailed},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, tt := range []struct {
		done, total int
		want        string
	}{
		{0, 0, "[----]"},
		{0, 3, "[----]"},
		{2, 4, "[##--]"},
		{3, 3, "[####]"},
	} {
		if got := bar(tt.done, tt.total, 4); got != tt.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tt.done, tt.total, got, tt.want)
		}
	}
}

func TestParseArgsTakesFlagsAnywhere(t *testing.T) {
	fs, cf := newClientFlagSet("erasures get", func(string) string { return "" }, io.Discard, true)
	pos, err := parseArgs(fs, []string{"id-1", "--json", "--api-url", "http://h:1"}, 1, "the request's id")
	if err != nil || !reflect.DeepEqual(pos, []string{"id-1"}) || !cf.json || cf.apiURL != "http://h:1" {
		t.Errorf("parseArgs = %q, %v; json %v, api-url %q", pos, err, cf.json, cf.apiURL)
	}
	fs, _ = newClientFlagSet("erasures get", func(string) string { return "" }, io.Discard, true)
	if _, err := parseArgs(fs, []string{"a", "b"}, 1, "the request's id"); err == nil {
		t.Error("two ids accepted")
	}
}

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2027-06-30T00:00:00Z", time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC), true},
		{"48h", now.Add(48 * time.Hour), true},
		{"-1h", time.Time{}, false},
		{"next week", time.Time{}, false},
	} {
		got, err := parseUntil(tt.in, now)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestWaitDrawsABarOnATerminal: on a terminal, --wait redraws one line in
// place, a bar of the systems done, and ends it once the request is final.
func TestWaitDrawsABarOnATerminal(t *testing.T) {
	answers := []string{
		`{"id":"r-1","status":"running","systems":[{"name":"a","status":"erased"},{"name":"b","status":"dispatched"}]}`,
		`{"id":"r-1","status":"completed","systems":[{"name":"a","status":"erased"},{"name":"b","status":"not_found"}]}`,
	}
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, answers[min(calls, len(answers)-1)])
		calls++
	}))
	defer srv.Close()
	c, err := apiclient.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	first := lethe.Erasure{ID: "r-1", Status: lethe.RequestPending}
	var out bytes.Buffer
	_, e, err := waitErasure(context.Background(), c, nil, first, time.Millisecond, &out, true)
	if err != nil || e.Status != lethe.RequestCompleted {
		t.Fatalf("waitErasure = %v, %v", e.Status, err)
	}
	const clear = "\r\x1b[K"
	want := clear + "[------------------------] request r-1 pending: 0/0 systems done" +
		clear + "[############------------] request r-1 running: 1/2 systems done" +
		clear + "[########################] request r-1 completed: 2/2 systems done\n"
	if out.String() != want {
		t.Errorf("terminal progress\n%q\nwant\n%q", out.String(), want)
	}
}
