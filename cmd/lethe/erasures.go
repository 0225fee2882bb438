package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/apiclient"
)

const erasuresUsage = `Usage: lethe erasures <create|plan|get|list|cancel|extend|retry> [flags]

  create --subject TYPE=VALUE [--subject TYPE=VALUE]... --reason TEXT
         [--requested-by REF] [--policy NAME] [--dry-run]
         [--idempotency-key KEY] [--wait [--poll-interval 1s]]
           submit an erasure request; --wait follows it until it ends
  plan (--subject TYPE=VALUE... | --type TYPE...)
           preview which systems a request would reach, in which waves
           (after, derived identifiers, legal holds); dispatches nothing
  get ID [--wait [--poll-interval 1s]]
           show a request and each system's progress
  list [--status S] [--overdue] [--limit N] [--cursor C]
           list requests, newest first
  cancel ID
           stop a request; what was erased stays erased
  extend ID (--by DURATION | --until TIME) --reason TEXT
           move the deadline once, by at most two months (GDPR Art. 12(3))
  retry ID [--system NAME]... [--wait [--poll-interval 1s]]
           give the request's failed systems a fresh attempt budget
  retry --all [--status failed|running] [--system NAME] [--since TIME]
        [--limit N] [--idempotency-key KEY]
           retry every request that matches, 100 per call, until none is left

Every command takes --api-url ($LETHE_API_URL, default http://127.0.0.1:8080),
--token ($LETHE_TOKEN) and --json (print the API's JSON instead of a table).
Exit status: 0 ok; 1 bad command line; 2 the API refused the call (4xx);
3 the API is unreachable or failing (5xx); 4 --wait saw the request end
failed or canceled.
`

// runErasures runs `lethe erasures`: erasure requests through the API,
// for operators and scripts that do not speak HTTP.
func runErasures(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, erasuresUsage)
		return errors.New("erasures: name a subcommand: create, plan, get, list, cancel, extend or retry")
	}
	rest := args[1:]
	switch args[0] {
	case "create":
		return runErasureCreate(ctx, rest, env, stdout, stderr)
	case "plan":
		return runErasurePlan(ctx, rest, env, stdout, stderr)
	case "get":
		return runErasureGet(ctx, rest, env, stdout, stderr)
	case "list":
		return runErasureList(ctx, rest, env, stdout, stderr)
	case "cancel":
		return runErasureCancel(ctx, rest, env, stdout, stderr)
	case "extend":
		return runErasureExtend(ctx, rest, env, stdout, stderr)
	case "retry":
		return runErasureRetry(ctx, rest, env, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, erasuresUsage)
		return nil
	}
	fmt.Fprint(stderr, erasuresUsage)
	return fmt.Errorf("erasures: unknown subcommand %q", args[0])
}

// waitFlags are --wait and its polling interval.
type waitFlags struct {
	wait     bool
	interval time.Duration
}

func (wf *waitFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&wf.wait, "wait", false, "follow the request until it ends, showing how many systems are done; exit 4 if it fails or is canceled")
	fs.DurationVar(&wf.interval, "poll-interval", time.Second, "with --wait: how often to ask the API")
}

func runErasureCreate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures create", env, stderr, true)
	var subjects subjectFlag
	var reason, requestedBy, policy, key string
	var dryRun bool
	var wf waitFlags
	fs.Var(&subjects, "subject", "an identifier of the subject as type=value, such as email=ada@example.com (repeatable)")
	fs.StringVar(&reason, "reason", "", "why the subject is erased, such as gdpr_art17")
	fs.StringVar(&requestedBy, "requested-by", "", "your own reference, such as support:ticket-991")
	fs.StringVar(&policy, "policy", "", "the deadline policy, such as gdpr or ccpa (default: the API's)")
	fs.BoolVar(&dryRun, "dry-run", false, "systems report what they would erase and change nothing")
	fs.StringVar(&key, "idempotency-key", "", "the same key with the same request answers the first request again, so a retried command never erases twice")
	wf.register(fs)
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	subject, err := subjects.subject()
	if err != nil {
		return fmt.Errorf("erasures create: %w", err)
	}
	switch {
	case strings.TrimSpace(reason) == "":
		return errors.New("erasures create: --reason is required")
	case wf.wait && wf.interval <= 0:
		return errors.New("erasures create: --poll-interval must be positive")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	body := map[string]any{"subject": subject, "reason": reason, "requested_by": requestedBy, "dry_run": dryRun}
	if policy != "" {
		body["policy"] = policy
	}
	var header []string
	if key != "" {
		header = []string{"Idempotency-Key", key}
	}
	b, err := c.Do(ctx, http.MethodPost, "/v1/erasures", body, header...)
	if err != nil {
		return err
	}
	return showOrWait(ctx, c, cf, wf, b, stdout, stderr)
}

// runErasurePlan previews a request (POST /v1/erasures/plan).
func runErasurePlan(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures plan", env, stderr, true)
	var subjects subjectFlag
	var types repeatedFlag
	fs.Var(&subjects, "subject", "an identifier of the subject as type=value; its value only finds legal holds (repeatable)")
	fs.Var(&types, "type", "an identifier type of the subject, such as email, when no value is to be sent (repeatable)")
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	var body map[string]any
	switch {
	case len(subjects) > 0 && len(types) > 0:
		return errors.New("erasures plan: give --subject or --type, not both")
	case len(subjects) > 0:
		subject, err := subjects.subject()
		if err != nil {
			return fmt.Errorf("erasures plan: %w", err)
		}
		body = map[string]any{"subject": subject}
	case len(types) > 0:
		body = map[string]any{"identifier_types": []string(types)}
	default:
		return errors.New("erasures plan: give --subject TYPE=VALUE or --type TYPE")
	}
	return clientCall(ctx, cf, stdout, http.MethodPost, "/v1/erasures/plan", body, func(b []byte) error {
		var p lethe.ErasurePlan
		if err := decodeAnswer(b, &p); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "WAVE\tSYSTEM\tIDENTIFIERS\tAFTER\tNOTE")
		for _, s := range p.Systems {
			wave, note := strconv.Itoa(s.Wave), ""
			switch {
			case s.Hold != nil:
				wave, note = "-", "held: "+s.Hold.ID+" ("+s.Hold.Basis+")"
			case s.Derived:
				note = "derived, revealed by " + strings.Join(s.RevealedBy, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", wave, s.Name, strings.Join(s.Identifiers, ","),
				dashIfEmpty(strings.Join(s.After, ",")), note)
		}
		return tw.Flush()
	})
}

func runErasureGet(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures get", env, stderr, true)
	var wf waitFlags
	wf.register(fs)
	pos, err := parseArgs(fs, args, 1, "the request's id")
	if err != nil {
		return err
	}
	if wf.wait && wf.interval <= 0 {
		return errors.New("erasures get: --poll-interval must be positive")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	b, err := c.Do(ctx, http.MethodGet, "/v1/erasures/"+escape(pos[0]), nil)
	if err != nil {
		return err
	}
	return showOrWait(ctx, c, cf, wf, b, stdout, stderr)
}

// showOrWait prints the request the API answered with, or first follows
// it to its end when --wait asks.
func showOrWait(ctx context.Context, c *apiclient.Client, cf *clientFlags, wf waitFlags, b []byte, stdout, stderr io.Writer) error {
	return showOrWaitFor(ctx, c, cf, wf, b, stdout, stderr, waitErasure, printErasure, func(e lethe.Erasure) error {
		if e.Status == lethe.RequestCompleted {
			return nil
		}
		return &requestEndedError{id: e.ID, status: e.Status, failed: countStatus(e, lethe.SystemFailed), total: len(e.Systems)}
	})
}

// showOrWaitFor prints what the API answered with, a request or a batch,
// or first follows it to its end with wait when --wait asks; ended then
// gives the error of one that did not complete.
func showOrWaitFor[T any](ctx context.Context, c *apiclient.Client, cf *clientFlags, wf waitFlags, b []byte, stdout, stderr io.Writer,
	wait func(context.Context, *apiclient.Client, []byte, T, time.Duration, io.Writer, bool) ([]byte, T, error),
	print func(io.Writer, T) error, ended func(T) error) error {
	var v T
	if err := decodeAnswer(b, &v); err != nil {
		return err
	}
	if wf.wait {
		var err error
		if b, v, err = wait(ctx, c, b, v, wf.interval, stderr, isTerminal(stderr)); err != nil {
			return err
		}
	}
	if cf.json {
		if err := printJSON(stdout, b); err != nil {
			return err
		}
	} else if err := print(stdout, v); err != nil {
		return err
	}
	if wf.wait {
		return ended(v)
	}
	return nil
}

// requestEndedError is a request that --wait saw end other than completed.
type requestEndedError struct {
	id            string
	status        lethe.RequestStatus
	failed, total int
}

func (e *requestEndedError) Error() string {
	if e.status == lethe.RequestFailed {
		return fmt.Sprintf("request %s ended failed: %d of %d systems failed", e.id, e.failed, e.total)
	}
	return fmt.Sprintf("request %s ended %s", e.id, e.status)
}

// waitErasure asks for the request every interval until it is final. It
// shows progress on w: a bar redrawn in place when w is a terminal (tty),
// else one line each time the status or the count of systems done
// changes, so that a log keeps what happened and not every poll.
func waitErasure(ctx context.Context, c *apiclient.Client, b []byte, e lethe.Erasure, interval time.Duration, w io.Writer, tty bool) ([]byte, lethe.Erasure, error) {
	var last string
	for {
		done := countFinal(e)
		line := fmt.Sprintf("request %s %s: %d/%d systems done", e.ID, e.Status, done, len(e.Systems))
		if n := countStatus(e, lethe.SystemFailed); n > 0 {
			line += fmt.Sprintf(", %d failed", n)
		}
		switch {
		case tty:
			fmt.Fprintf(w, "\r\x1b[K%s %s", bar(done, len(e.Systems), 24), line)
			if e.Status.Final() {
				fmt.Fprintln(w)
			}
		case line != last:
			fmt.Fprintln(w, line)
		}
		last = line
		if e.Status.Final() {
			return b, e, nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil, e, fmt.Errorf("stopped waiting; the request goes on: lethe erasures get %s", e.ID)
		case <-time.After(interval):
		}
		var err error
		if b, err = c.Do(ctx, http.MethodGet, "/v1/erasures/"+escape(e.ID), nil); err != nil {
			if tty {
				fmt.Fprintln(w)
			}
			if ctx.Err() != nil {
				return nil, e, fmt.Errorf("stopped waiting; the request goes on: lethe erasures get %s", e.ID)
			}
			return nil, e, err
		}
		if err := decodeAnswer(b, &e); err != nil {
			return nil, e, err
		}
	}
}

// bar draws done out of total as [#####-----].
func bar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
}

// isTerminal reports whether w is a terminal, where progress is redrawn in
// place rather than written line by line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func countFinal(e lethe.Erasure) int {
	n := 0
	for _, s := range e.Systems {
		if s.Status.Final() {
			n++
		}
	}
	return n
}

func countStatus(e lethe.Erasure, st lethe.SystemStatus) int {
	n := 0
	for _, s := range e.Systems {
		if s.Status == st {
			n++
		}
	}
	return n
}

// printErasure shows one request: its fields, then a table of its systems.
func printErasure(w io.Writer, e lethe.Erasure) error {
	rows := [][2]string{
		{"ID", e.ID},
		{"STATUS", string(e.Status)},
		{"OVERDUE", yesNo(e.Overdue)},
		{"DRY RUN", yesNo(e.DryRun)},
		{"SUBJECT TYPES", strings.Join(e.SubjectTypes, ",")},
		{"REASON", e.Reason},
		{"REQUESTED BY", e.RequestedBy},
		{"CREATED BY", e.CreatedBy},
		{"CREATED", timeOrDash(&e.CreatedAt)},
		{"DEADLINE", timeOrDash(&e.Deadline)},
	}
	if e.ExtendedAt != nil {
		rows = append(rows, [2]string{"EXTENDED", timeOrDash(e.ExtendedAt) + " (" + e.ExtensionReason + ")"})
	}
	rows = append(rows,
		[2]string{"COMPLETED", timeOrDash(e.CompletedAt)},
		[2]string{"SYSTEMS", fmt.Sprintf("%d/%d done", countFinal(e), len(e.Systems))},
		[2]string{"WORKFLOW", e.WorkflowID})
	if err := fields(w, rows...); err != nil {
		return err
	}
	if len(e.Systems) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "SYSTEM\tSTATUS\tATTEMPTS\tRECORDS\tCONFIRMED\tDETAIL")
	for _, s := range e.Systems {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Name, s.Status, s.Attempts, s.Records, timeOrDash(s.ConfirmedAt), orEmpty(s.Detail))
	}
	return tw.Flush()
}

func runErasureList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures list", env, stderr, true)
	var status, cursor string
	var overdue bool
	var limit int
	fs.StringVar(&status, "status", "", "only requests in this status: pending, running, completed, failed or canceled")
	fs.BoolVar(&overdue, "overdue", false, "only requests past their deadline")
	fs.IntVar(&limit, "limit", 0, "requests per page, 1 to 200 (default: the API's, 50)")
	fs.StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if overdue {
		q.Set("overdue", "true")
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	path := "/v1/erasures"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, path, nil, func(b []byte) error {
		var page struct {
			Items      []lethe.Erasure `json:"items"`
			NextCursor string          `json:"next_cursor"`
		}
		if err := decodeAnswer(b, &page); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "ID\tSTATUS\tSYSTEMS\tSUBJECT TYPES\tCREATED\tDEADLINE\tOVERDUE\tDRY RUN")
		for _, e := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Status, countFinal(e), len(e.Systems),
				strings.Join(e.SubjectTypes, ","), timeOrDash(&e.CreatedAt), timeOrDash(&e.Deadline), yesNo(e.Overdue), yesNo(e.DryRun))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.NextCursor != "" {
			fmt.Fprintf(stderr, "more: lethe erasures list --cursor %s\n", page.NextCursor)
		}
		return nil
	})
}

func runErasureCancel(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures cancel", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the request's id")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodPost, "/v1/erasures/"+escape(pos[0])+"/cancel", nil, erasurePrinter(stdout))
}

func runErasureExtend(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures extend", env, stderr, true)
	var by time.Duration
	var until, reason string
	fs.DurationVar(&by, "by", 0, "how much later the deadline falls, such as 720h")
	fs.StringVar(&until, "until", "", "the new deadline, RFC 3339 (instead of --by)")
	fs.StringVar(&reason, "reason", "", "why; the subject must be told it (GDPR Art. 12(3))")
	pos, err := parseArgs(fs, args, 1, "the request's id")
	if err != nil {
		return err
	}
	id := escape(pos[0])
	switch {
	case (by == 0) == (until == ""):
		return errors.New("erasures extend: give one of --by or --until")
	case strings.TrimSpace(reason) == "":
		return errors.New("erasures extend: --reason is required")
	}
	if until != "" {
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return fmt.Errorf("erasures extend: --until must be an RFC 3339 time, such as 2027-02-01T00:00:00Z")
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		b, err := c.Do(ctx, http.MethodGet, "/v1/erasures/"+id, nil)
		if err != nil {
			return err
		}
		var e lethe.Erasure
		if err := decodeAnswer(b, &e); err != nil {
			return err
		}
		if by = t.Sub(e.Deadline); by <= 0 {
			return fmt.Errorf("erasures extend: --until must be after the current deadline, %s", e.Deadline.UTC().Format(time.RFC3339))
		}
	}
	body := map[string]string{"by": by.String(), "reason": reason}
	return clientCall(ctx, cf, stdout, http.MethodPost, "/v1/erasures/"+id+"/extend", body, erasurePrinter(stdout))
}

func erasurePrinter(w io.Writer) func([]byte) error {
	return func(b []byte) error {
		var e lethe.Erasure
		if err := decodeAnswer(b, &e); err != nil {
			return err
		}
		return printErasure(w, e)
	}
}

// dashIfEmpty shows an empty cell as "-".
func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
