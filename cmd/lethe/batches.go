package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/apiclient"
)

const batchesUsage = `Usage: lethe batches <submit|get|list|subjects|cancel|retry> [flags]

  submit FILE|- [--reason TEXT] [--requested-by REF] [--dry-run]
         [--idempotency-key KEY] [--wait [--poll-interval 1s]]
           submit a bulk erasure of up to 100,000 subjects, one per line of
           FILE (- reads standard input) as {"subject": {"email": "…"}};
           the file is sent as it is read, never held whole in memory;
           --wait follows the batch until it ends, with its rate and ETA
  get ID [--wait [--poll-interval 1s]]
           show a batch: its subjects by status and each system's counts
  list [--status S] [--limit N] [--cursor C]
           list batches, newest first
  subjects ID [--status S] [--limit N] [--cursor C]
           list a batch's subjects (identifier types and keyed digests,
           never values) and each system's status, such as --status failed
  cancel ID
           stop a batch; what was erased stays erased
  retry ID [--system NAME]... [--wait [--poll-interval 1s]]
           give the batch's failed subjects a fresh attempt budget

Every command takes --api-url ($LETHE_API_URL, default http://127.0.0.1:8080),
--token ($LETHE_TOKEN) and --json (print the API's JSON instead of a table).
Exit status: 0 ok; 1 bad command line; 2 the API refused the call (4xx;
a refused file's lines are named); 3 the API is unreachable or failing
(5xx); 4 --wait saw the batch end failed or canceled.
`

// ndjson is the content type of a bulk erasure's file: one JSON object per
// line.
const ndjson = "application/x-ndjson"

// runBatches runs `lethe batches`: bulk erasures through the API. stdin is
// what `submit -` reads.
func runBatches(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, batchesUsage)
		return errors.New("batches: name a subcommand: submit, get, list, subjects, cancel or retry")
	}
	rest := args[1:]
	switch args[0] {
	case "submit":
		return runBatchSubmit(ctx, rest, env, stdin, stdout, stderr)
	case "get":
		return runBatchGet(ctx, rest, env, stdout, stderr)
	case "list":
		return runBatchList(ctx, rest, env, stdout, stderr)
	case "subjects":
		return runBatchSubjects(ctx, rest, env, stdout, stderr)
	case "cancel":
		return runBatchCancel(ctx, rest, env, stdout, stderr)
	case "retry":
		return runBatchRetry(ctx, rest, env, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, batchesUsage)
		return nil
	}
	fmt.Fprint(stderr, batchesUsage)
	return fmt.Errorf("batches: unknown subcommand %q", args[0])
}

func runBatchSubmit(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches submit", env, stderr, true)
	var reason, requestedBy, key string
	var dryRun bool
	var wf waitFlags
	fs.StringVar(&reason, "reason", "", "why the subjects are erased, such as gdpr_art17")
	fs.StringVar(&requestedBy, "requested-by", "", "your own reference, such as support:ticket-991")
	fs.BoolVar(&dryRun, "dry-run", false, "systems report what they would erase and change nothing")
	fs.StringVar(&key, "idempotency-key", "", "the same key with the same file answers the first batch again, so a retried command never submits twice")
	wf.register(fs)
	pos, err := parseArgs(fs, args, 1, "the file of subjects, one JSON object per line, or - for standard input")
	if err != nil {
		return err
	}
	if wf.wait && wf.interval <= 0 {
		return errors.New("batches submit: --poll-interval must be positive")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	body := stdin
	if pos[0] != "-" {
		f, err := openSubjects(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		body = f
	}
	q := url.Values{}
	if reason != "" {
		q.Set("reason", reason)
	}
	if requestedBy != "" {
		q.Set("requested_by", requestedBy)
	}
	if dryRun {
		q.Set("dry_run", "true")
	}
	path := "/v1/erasure-batches"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var header []string
	if key != "" {
		header = []string{"Idempotency-Key", key}
	}
	b, err := c.Stream(ctx, http.MethodPost, path, ndjson, body, header...)
	if err != nil {
		return err
	}
	return showOrWaitBatch(ctx, c, cf, wf, b, stdout, stderr)
}

// openSubjects opens the file of a submission, refusing a folder before
// anything is sent.
func openSubjects(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("batches submit: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("batches submit: %s is a folder, not a file of subjects", path)
	}
	return f, nil
}

func runBatchGet(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches get", env, stderr, true)
	var wf waitFlags
	wf.register(fs)
	pos, err := parseArgs(fs, args, 1, "the batch's id")
	if err != nil {
		return err
	}
	if wf.wait && wf.interval <= 0 {
		return errors.New("batches get: --poll-interval must be positive")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	b, err := c.Do(ctx, http.MethodGet, batchPath(pos[0]), nil)
	if err != nil {
		return err
	}
	return showOrWaitBatch(ctx, c, cf, wf, b, stdout, stderr)
}

func runBatchList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches list", env, stderr, true)
	var status, cursor string
	var limit int
	fs.StringVar(&status, "status", "", "only batches in this status: pending, running, completed, failed or canceled")
	fs.IntVar(&limit, "limit", 0, "batches per page (default: the API's)")
	fs.StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	path := "/v1/erasure-batches" + pageQuery(status, limit, cursor)
	return clientCall(ctx, cf, stdout, http.MethodGet, path, nil, func(b []byte) error {
		var page struct {
			Items      []lethe.Batch `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}
		if err := decodeAnswer(b, &page); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "ID\tSTATUS\tDONE\tFAILED\tSUBJECT TYPES\tCREATED\tDEADLINE\tOVERDUE\tDRY RUN")
		for _, bt := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\t%s\n", bt.ID, bt.Status, bt.Counts.Done(), bt.Total, bt.Counts.Failed,
				orEmpty(strings.Join(bt.SubjectTypes, ",")), timeOrDash(&bt.CreatedAt), timeOrDash(&bt.Deadline), yesNo(bt.Overdue), yesNo(bt.DryRun))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.NextCursor != "" {
			fmt.Fprintf(stderr, "more: lethe batches list%s --cursor %s\n", statusArg(status), page.NextCursor)
		}
		return nil
	})
}

func runBatchSubjects(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches subjects", env, stderr, true)
	var status, cursor string
	var limit int
	fs.StringVar(&status, "status", "", "only subjects in this status, such as failed")
	fs.IntVar(&limit, "limit", 0, "subjects per page (default: the API's)")
	fs.StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")
	pos, err := parseArgs(fs, args, 1, "the batch's id")
	if err != nil {
		return err
	}
	path := batchPath(pos[0]) + "/subjects" + pageQuery(status, limit, cursor)
	return clientCall(ctx, cf, stdout, http.MethodGet, path, nil, func(b []byte) error {
		var page struct {
			Items      []lethe.BatchSubject `json:"items"`
			NextCursor string               `json:"next_cursor"`
		}
		if err := decodeAnswer(b, &page); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "ITEM\tSTATUS\tSYSTEMS\tIDENTIFIERS")
		for _, s := range page.Items {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Item, s.Status, subjectSystems(s.Systems), subjectDigests(s.Identifiers))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.NextCursor != "" {
			fmt.Fprintf(stderr, "more: lethe batches subjects %s%s --cursor %s\n", pos[0], statusArg(status), page.NextCursor)
		}
		return nil
	})
}

// subjectSystems shows each system's status for one subject, with the
// detail of a system that did not erase: "crm erased, billing failed
// (archive offline)".
func subjectSystems(systems []lethe.SystemProgress) string {
	parts := make([]string, len(systems))
	for i, s := range systems {
		parts[i] = s.Name + " " + string(s.Status)
		if s.Detail != "" {
			parts[i] += " (" + s.Detail + ")"
		}
	}
	return orEmpty(strings.Join(parts, ", "))
}

// subjectDigests shows a subject's identifiers as type:digest, the digest
// being what a subject's inclusion proof is asked by.
func subjectDigests(ids []lethe.SubjectDigest) string {
	parts := make([]string, len(ids))
	for i, d := range ids {
		parts[i] = d.Type + ":" + d.Digest
	}
	return orEmpty(strings.Join(parts, " "))
}

func runBatchCancel(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches cancel", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the batch's id")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodPost, batchPath(pos[0])+"/cancel", nil, func(b []byte) error {
		var bt lethe.Batch
		if err := decodeAnswer(b, &bt); err != nil {
			return err
		}
		return printBatch(stdout, bt)
	})
}

func runBatchRetry(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("batches retry", env, stderr, true)
	var systems repeatedFlag
	var wf waitFlags
	fs.Var(&systems, "system", "retry only this system (repeatable; default: every system that failed)")
	wf.register(fs)
	pos, err := parseArgs(fs, args, 1, "the batch's id")
	if err != nil {
		return err
	}
	if wf.wait && wf.interval <= 0 {
		return errors.New("batches retry: --poll-interval must be positive")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var body any
	if len(systems) > 0 {
		body = map[string]any{"systems": []string(systems)}
	}
	b, err := c.Do(ctx, http.MethodPost, batchPath(pos[0])+"/retry", body)
	if err != nil {
		return err
	}
	return showOrWaitBatch(ctx, c, cf, wf, b, stdout, stderr)
}

func batchPath(id string) string { return "/v1/erasure-batches/" + escape(id) }

// pageQuery is the query of a list call: a status, a page size and the
// cursor of the page before, each when given.
func pageQuery(status string, limit int, cursor string) string {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// statusArg repeats --status in the command that prints the next page.
func statusArg(status string) string {
	if status == "" {
		return ""
	}
	return " --status " + status
}

// showOrWaitBatch prints the batch the API answered with, or first
// follows it to its end when --wait asks.
func showOrWaitBatch(ctx context.Context, c *apiclient.Client, cf *clientFlags, wf waitFlags, b []byte, stdout, stderr io.Writer) error {
	return showOrWaitFor(ctx, c, cf, wf, b, stdout, stderr, waitBatch, printBatch, func(bt lethe.Batch) error {
		if bt.Status == lethe.RequestCompleted {
			return nil
		}
		return &batchEndedError{id: bt.ID, status: bt.Status, counts: bt.Counts, total: bt.Total}
	})
}

// batchEndedError is a batch that --wait saw end other than completed.
type batchEndedError struct {
	id     string
	status lethe.RequestStatus
	counts lethe.BatchCounts
	total  int
}

func (e *batchEndedError) Error() string {
	if e.status == lethe.RequestFailed {
		return fmt.Sprintf("batch %s ended failed: %d of %d subjects failed", e.id, e.counts.Failed, e.total)
	}
	return fmt.Sprintf("batch %s ended %s: %d of %d subjects completed", e.id, e.status, e.counts.Completed, e.total)
}

// Polling of --wait on a batch: soon after the submission, since a small
// batch may be done in a moment, then less often, up to --poll-interval.
const batchFirstPoll = 100 * time.Millisecond

// plainProgressEvery is how often --wait writes a progress line when
// stderr is not a terminal (a log, a CI job): often enough to see the
// batch move, seldom enough that a long one does not flood the log.
const plainProgressEvery = 5 * time.Second

// waitBatch asks for the batch until it is final, showing its progress on
// w: a bar redrawn in place when w is a terminal, else a line when the
// status changes and every plainProgressEvery. It ends with a summary.
func waitBatch(ctx context.Context, c *apiclient.Client, b []byte, bt lethe.Batch, interval time.Duration, w io.Writer, tty bool) ([]byte, lethe.Batch, error) {
	m := newRateMeter(rateWindow)
	next := min(batchFirstPoll, interval)
	var lastStatus lethe.RequestStatus
	var lastPrinted time.Time
	stopped := func() error {
		if tty {
			fmt.Fprintln(w)
		}
		return fmt.Errorf("stopped waiting; the batch goes on: lethe batches get %s", bt.ID)
	}
	for {
		now := time.Now()
		m.observe(now, bt.Counts.Done())
		line := batchProgress(bt, m)
		switch {
		case tty:
			fmt.Fprintf(w, "\r\x1b[K%s %s", bar(bt.Counts.Done(), bt.Total, 24), line)
			if bt.Status.Final() {
				fmt.Fprintln(w)
			}
		case bt.Status != lastStatus || bt.Status.Final() || now.Sub(lastPrinted) >= plainProgressEvery:
			fmt.Fprintln(w, line)
			lastPrinted = now
		}
		lastStatus = bt.Status
		if bt.Status.Final() {
			fmt.Fprintln(w, batchSummary(bt, now))
			return b, bt, nil
		}
		select {
		case <-ctx.Done():
			return nil, bt, stopped()
		case <-time.After(next):
		}
		next = min(2*next, interval)
		var err error
		if b, err = c.Do(ctx, http.MethodGet, batchPath(bt.ID), nil); err != nil {
			if ctx.Err() != nil {
				return nil, bt, stopped()
			}
			if tty {
				fmt.Fprintln(w)
			}
			return nil, bt, err
		}
		if err := decodeAnswer(b, &bt); err != nil {
			return nil, bt, err
		}
	}
}

// batchProgress is one line of a batch's progress: "batch B running:
// 1200/5000 subjects done, 3 failed, 412.0 subjects/s, ETA 9s". The rate
// and the ETA appear once two polls have measured them.
func batchProgress(bt lethe.Batch, m *rateMeter) string {
	done := bt.Counts.Done()
	line := fmt.Sprintf("batch %s %s: %d/%d subjects done", bt.ID, bt.Status, done, bt.Total)
	if bt.Counts.Failed > 0 {
		line += fmt.Sprintf(", %d failed", bt.Counts.Failed)
	}
	rate, ok := m.rate()
	if !ok {
		return line
	}
	line += fmt.Sprintf(", %.1f subjects/s", rate)
	if !bt.Status.Final() {
		eta := "-"
		if rate > 0 {
			eta = (time.Duration(float64(bt.Total-done) / rate * float64(time.Second))).Round(time.Second).String()
		}
		line += ", ETA " + eta
	}
	return line
}

// batchSummary is the line --wait ends with: the batch's outcome and its
// rate from creation to end, by the API's clock.
func batchSummary(bt lethe.Batch, now time.Time) string {
	end := now
	if bt.CompletedAt != nil {
		end = *bt.CompletedAt
	}
	took := end.Sub(bt.CreatedAt)
	s := fmt.Sprintf("batch %s %s: %d subjects", bt.ID, bt.Status, bt.Total)
	if !bt.CreatedAt.IsZero() && took > 0 {
		s += fmt.Sprintf(" in %s, %.1f subjects/s", took.Round(100*time.Millisecond), float64(bt.Counts.Done())/took.Seconds())
	}
	return s + fmt.Sprintf("; %d completed, %d failed, %d canceled", bt.Counts.Completed, bt.Counts.Failed, bt.Counts.Canceled)
}

// rateWindow is how far back --wait's rate looks: long enough to smooth
// the steps in which chunks of subjects finish, short enough to follow a
// batch that speeds up or slows down.
const rateWindow = 20 * time.Second

// rateMeter measures a rate over a moving window of samples of a count.
type rateMeter struct {
	window  time.Duration
	samples []rateSample
}

type rateSample struct {
	at time.Time
	n  int
}

func newRateMeter(window time.Duration) *rateMeter { return &rateMeter{window: window} }

// observe records that the count was n at t. It keeps the samples of the
// window and the last one before it, so that the rate always spans the
// whole window once the wait has lasted that long.
func (m *rateMeter) observe(t time.Time, n int) {
	m.samples = append(m.samples, rateSample{t, n})
	for len(m.samples) > 2 && !m.samples[1].at.After(t.Add(-m.window)) {
		m.samples = m.samples[1:]
	}
}

// rate is the count's growth per second over the window; ok is false
// until two samples apart in time were observed.
func (m *rateMeter) rate() (float64, bool) {
	if len(m.samples) < 2 {
		return 0, false
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return float64(last.n-first.n) / dt, true
}

// printBatch shows one batch: its fields, then a table of its systems.
func printBatch(w io.Writer, bt lethe.Batch) error {
	subjects := strconv.Itoa(bt.Total)
	switch {
	case bt.Duplicates == 1:
		subjects += " (1 duplicate merged)"
	case bt.Duplicates > 1:
		subjects += fmt.Sprintf(" (%d duplicates merged)", bt.Duplicates)
	}
	c := bt.Counts
	if err := fields(w,
		[2]string{"ID", bt.ID},
		[2]string{"STATUS", string(bt.Status)},
		[2]string{"OVERDUE", yesNo(bt.Overdue)},
		[2]string{"DRY RUN", yesNo(bt.DryRun)},
		[2]string{"SUBJECTS", subjects},
		[2]string{"DONE", fmt.Sprintf("%d/%d", c.Done(), bt.Total)},
		[2]string{"BY STATUS", fmt.Sprintf("%d pending, %d running, %d completed, %d failed, %d canceled", c.Pending, c.Running, c.Completed, c.Failed, c.Canceled)},
		[2]string{"SUBJECT TYPES", strings.Join(bt.SubjectTypes, ",")},
		[2]string{"REASON", bt.Reason},
		[2]string{"REQUESTED BY", bt.RequestedBy},
		[2]string{"CREATED BY", bt.CreatedBy},
		[2]string{"CREATED", timeOrDash(&bt.CreatedAt)},
		[2]string{"DEADLINE", timeOrDash(&bt.Deadline)},
		[2]string{"COMPLETED", timeOrDash(bt.CompletedAt)},
		[2]string{"WORKFLOW", bt.WorkflowID},
	); err != nil {
		return err
	}
	if len(bt.Systems) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "SYSTEM\tPENDING\tDISPATCHED\tERASED\tNOT FOUND\tRETAINED\tFAILED\tRECORDS")
	for _, s := range bt.Systems {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Pending, s.Dispatched, s.Erased, s.NotFound, s.Retained, s.Failed, s.Records)
	}
	return tw.Flush()
}
