package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/apiclient"
)

// fakeBatchAPI plays the batch routes of Lethe's API as documented
// (POST /v1/erasure-batches as NDJSON, GET one and a list, its subjects,
// cancel and retry), with a bearer token, so that `lethe batches` is
// tested on its own.
type fakeBatchAPI struct {
	t   *testing.T
	URL string

	mu sync.Mutex
	// answers are the successive states of each batch that GET shows;
	// the last one repeats.
	answers map[string][]lethe.Batch
	gets    map[string]int
	// submitted is what the last submission carried.
	submitted submission
	// firstLine, when set, receives the first line of a submission as
	// soon as the server has read it, before it reads the rest.
	firstLine chan string
	// calls are the other calls made, as "METHOD /path?query body".
	calls []string
}

// submission is what the server saw of a POST /v1/erasure-batches.
type submission struct {
	contentType, key, transfer string
	query                      map[string]string
	lines                      []map[string]string
}

const fakeToken = "tok-batches"

func newFakeBatchAPI(t *testing.T) *fakeBatchAPI {
	f := &fakeBatchAPI{t: t, answers: map[string][]lethe.Batch{}, gets: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/erasure-batches", f.submit)
	mux.HandleFunc("GET /v1/erasure-batches/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		states, ok := f.answers[r.PathValue("id")]
		n := f.gets[r.PathValue("id")]
		f.gets[r.PathValue("id")]++
		f.mu.Unlock()
		if !ok {
			fakeError(w, http.StatusNotFound, "batch_not_found", "no batch has this id")
			return
		}
		fakeJSON(w, http.StatusOK, states[min(n, len(states)-1)])
	})
	mux.HandleFunc("GET /v1/erasure-batches", f.record(func(w http.ResponseWriter, r *http.Request) {
		fakeJSON(w, http.StatusOK, map[string]any{"items": []lethe.Batch{fakeBatch("b-1", lethe.RequestCompleted, 4, 4, 0)}, "next_cursor": "c-2"})
	}))
	mux.HandleFunc("GET /v1/erasure-batches/{id}/subjects", f.record(func(w http.ResponseWriter, r *http.Request) {
		fakeJSON(w, http.StatusOK, map[string]any{"items": []lethe.BatchSubject{{
			Item: 3, Status: lethe.RequestFailed,
			Identifiers: []lethe.SubjectDigest{{Type: "email", Digest: "d-email-3"}, {Type: "user_id", Digest: "d-user-3"}},
			Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemErased, Attempts: 1, Records: 2},
				{Name: "billing", Status: lethe.SystemFailed, Attempts: 3, Detail: "archive offline"}},
		}}})
	}))
	mux.HandleFunc("POST /v1/erasure-batches/{id}/cancel", f.record(func(w http.ResponseWriter, r *http.Request) {
		fakeJSON(w, http.StatusOK, fakeBatch(r.PathValue("id"), lethe.RequestCanceled, 4, 1, 0))
	}))
	mux.HandleFunc("POST /v1/erasure-batches/{id}/retry", f.record(func(w http.ResponseWriter, r *http.Request) {
		fakeJSON(w, http.StatusAccepted, fakeBatch(r.PathValue("id"), lethe.RequestRunning, 4, 3, 0))
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeToken {
			fakeError(w, http.StatusUnauthorized, "unauthenticated", "a bearer credential is required")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// record notes the call before h answers it.
func (f *fakeBatchAPI) record(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
		f.mu.Unlock()
		h(w, r)
	}
}

// submit reads the NDJSON body a line at a time, as the API does, and
// refuses the batch with the numbers of the lines that are not subjects.
func (f *fakeBatchAPI) submit(w http.ResponseWriter, r *http.Request) {
	s := submission{
		contentType: r.Header.Get("Content-Type"),
		key:         r.Header.Get("Idempotency-Key"),
		transfer:    strings.Join(r.TransferEncoding, ","),
		query:       map[string]string{},
	}
	for k := range r.URL.Query() {
		s.query[k] = r.URL.Query().Get(k)
	}
	if s.contentType != ndjson {
		fakeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "want NDJSON")
		return
	}
	sc := bufio.NewScanner(r.Body)
	var bad []int
	for n := 1; sc.Scan(); n++ {
		if n == 1 && f.firstLine != nil {
			f.firstLine <- sc.Text()
		}
		var line struct {
			Subject map[string]string `json:"subject"`
		}
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&line); err != nil || len(line.Subject) == 0 {
			bad = append(bad, n)
			continue
		}
		s.lines = append(s.lines, line.Subject)
	}
	f.mu.Lock()
	f.submitted = s
	f.mu.Unlock()
	if err := sc.Err(); err != nil {
		fakeError(w, http.StatusBadRequest, "invalid_batch", "the body could not be read")
		return
	}
	if len(bad) > 0 {
		fakeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"code": "invalid_batch", "message": fmt.Sprintf("%d lines are not subjects", len(bad)), "lines": bad}})
		return
	}
	b := fakeBatch("b-new", lethe.RequestPending, len(s.lines), 0, 0)
	b.Reason, b.RequestedBy, b.DryRun = s.query["reason"], s.query["requested_by"], s.query["dry_run"] == "true"
	fakeJSON(w, http.StatusAccepted, b)
}

// progress sets the states GET shows of batch id, one per poll.
func (f *fakeBatchAPI) progress(id string, states ...lethe.Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[id] = states
}

func (f *fakeBatchAPI) lastSubmission() submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.submitted
}

func (f *fakeBatchAPI) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

// env is the environment of a caller of the fake API.
func (f *fakeBatchAPI) env() func(string) string {
	return func(k string) string {
		return map[string]string{"LETHE_API_URL": f.URL, "LETHE_TOKEN": fakeToken}[k]
	}
}

// lethe runs a command against the fake API with stdin as standard input.
func (f *fakeBatchAPI) lethe(stdin io.Reader, args ...string) cliResult {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := runBatches(ctx, args, f.env(), stdin, &out, &errOut)
	return cliResult{stdout: out.String(), code: report(oneLine(err), &errOut), stderr: errOut.String()}
}

// fakeBatch is a batch of total subjects of which completed and failed
// ended, on two systems, created ten seconds before its end.
func fakeBatch(id string, status lethe.RequestStatus, total, completed, failed int) lethe.Batch {
	created := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	b := lethe.Batch{
		ID: id, Status: status, Total: total, Duplicates: 1, SubjectTypes: []string{"email", "user_id"},
		Reason: "gdpr_art17", CreatedBy: "token:ops",
		Counts:    lethe.BatchCounts{Completed: completed, Failed: failed, Running: total - completed - failed},
		CreatedAt: created, Deadline: created.Add(30 * 24 * time.Hour), WorkflowID: "erasure-batch-" + id,
		Systems: []lethe.BatchSystemCounts{
			{Name: "crm", Erased: completed + failed, Dispatched: total - completed - failed, Records: int64(2 * (completed + failed))},
			{Name: "billing", Erased: completed, Failed: failed, Dispatched: total - completed - failed, Records: int64(completed)},
		},
	}
	switch status {
	case lethe.RequestCanceled:
		b.Counts.Canceled, b.Counts.Running = b.Counts.Running, 0
	case lethe.RequestPending:
		b.Counts.Pending, b.Counts.Running = b.Counts.Running, 0
	}
	if status.Final() {
		end := created.Add(10 * time.Second)
		b.CompletedAt = &end
	}
	return b
}

func fakeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fakeError(w http.ResponseWriter, status int, code, msg string) {
	fakeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// subjectsFile writes lines to a file of the test's and returns its path.
func subjectsFile(t *testing.T, lines ...string) string {
	path := filepath.Join(t.TempDir(), "subjects.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var threeSubjects = []string{
	`{"subject": {"email": "ada@example.org", "user_id": "u-1"}}`,
	`{"subject": {"email": "grace@example.org"}}`,
	`{"subject": {"user_id": "u-3"}}`,
}

// TestBatchesSubmitStreamsTheFile: submit sends the file as it is, NDJSON
// in a chunked body (read as it is sent, never whole), with the
// Idempotency-Key and reason, requested_by and dry_run as query
// parameters, and shows the batch the API accepted; --json prints the
// API's own answer. No identifier value of the file is printed.
func TestBatchesSubmitStreamsTheFile(t *testing.T) {
	f := newFakeBatchAPI(t)
	path := subjectsFile(t, threeSubjects...)
	res := f.lethe(nil, "submit", path, "--reason", "gdpr_art17", "--requested-by", "ticket-7", "--dry-run", "--idempotency-key", "k-1")
	wantOK(t, "batches submit", res)
	got := f.lastSubmission()
	want := submission{
		contentType: "application/x-ndjson", key: "k-1", transfer: "chunked",
		query: map[string]string{"reason": "gdpr_art17", "requested_by": "ticket-7", "dry_run": "true"},
		lines: []map[string]string{{"email": "ada@example.org", "user_id": "u-1"}, {"email": "grace@example.org"}, {"user_id": "u-3"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the API saw %+v\nwant %+v", got, want)
	}
	for name, v := range map[string]string{"ID": "b-new", "STATUS": "pending", "SUBJECTS": "3 (1 duplicate merged)", "DONE": "0/3",
		"REASON": "gdpr_art17", "REQUESTED BY": "ticket-7", "DRY RUN": "yes"} {
		if got := field(t, res.stdout, name); got != v {
			t.Errorf("%s = %q, want %q\n%s", name, got, v, res.stdout)
		}
	}

	res = f.lethe(nil, "submit", path, "--json")
	wantOK(t, "batches submit --json", res)
	var b lethe.Batch
	if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || b.ID != "b-new" || b.Total != 3 {
		t.Errorf("submit --json printed %q (%v), want the API's batch", res.stdout, err)
	}
	if got := f.lastSubmission(); len(got.query) != 0 || got.key != "" {
		t.Errorf("a submission without flags sent query %v and key %q, want none", got.query, got.key)
	}
	for _, v := range []string{"ada@example.org", "grace@example.org", "u-1", "u-3"} {
		if strings.Contains(res.stdout+res.stderr, v) {
			t.Errorf("the identifier value %q was printed", v)
		}
	}
}

// TestBatchesSubmitStreamsStandardInput: with -, the API reads the first
// line while the second has not yet been written: the command sends what
// it reads as it reads it.
func TestBatchesSubmitStreamsStandardInput(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.firstLine = make(chan string, 1)
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, threeSubjects[0]+"\n")
		select {
		case <-f.firstLine:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("the API had not read the first line before the rest was written"))
			return
		}
		io.WriteString(pw, threeSubjects[1]+"\n"+threeSubjects[2]+"\n")
		pw.Close()
	}()
	res := f.lethe(pr, "submit", "-", "--reason", "gdpr_art17")
	wantOK(t, "batches submit -", res)
	if got := f.lastSubmission(); len(got.lines) != 3 || got.transfer != "chunked" {
		t.Errorf("the API read %d subjects (transfer %q), want 3 in a chunked body", len(got.lines), got.transfer)
	}
}

// TestBatchesSubmitRefused: the lines the API refuses are named on the
// one line of the error, with the exit status of a refusal; a command line
// without a file, or with one that does not exist, fails before any call.
func TestBatchesSubmitRefused(t *testing.T) {
	f := newFakeBatchAPI(t)
	path := subjectsFile(t, threeSubjects[0], `{"subject": {}}`, threeSubjects[1], `{"subject": {"email": "x@example.org"}, "oops": 1}`)
	res := f.lethe(nil, "submit", path)
	if want := "lethe: 400 invalid_batch: 2 lines are not subjects; lines 2, 4\n"; res.code != exitRefused || res.stderr != want || res.stdout != "" {
		t.Errorf("refused batch: exit %d, stderr %q, stdout %q; want %d and %q", res.code, res.stderr, res.stdout, exitRefused, want)
	}
	if strings.Contains(res.stderr, "x@example.org") {
		t.Errorf("the refusal repeated an identifier value: %q", res.stderr)
	}
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		prefix string
	}{
		{"no file", []string{"submit"}, exitUsage, "lethe: batches submit: give the file of subjects"},
		{"missing file", []string{"submit", filepath.Join(t.TempDir(), "nope.ndjson")}, exitUsage, "lethe: batches submit: open "},
		{"a folder", []string{"submit", t.TempDir()}, exitUsage, "lethe: batches submit: "},
		{"no token", []string{"submit", path, "--token", "wrong"}, exitRefused, "lethe: 401 unauthenticated: "},
		{"unknown batch", []string{"get", "b-none"}, exitRefused, "lethe: 404 batch_not_found: "},
		{"unknown subcommand", []string{"resubmit"}, exitUsage, "lethe: batches: unknown subcommand"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := f.lethe(nil, tt.args...)
			if res.code != tt.code || !strings.HasPrefix(res.stderr[strings.LastIndex(strings.TrimSuffix(res.stderr, "\n"), "\n")+1:], tt.prefix) {
				t.Errorf("exit %d, stderr %q; want %d and a last line starting %q", res.code, res.stderr, tt.code, tt.prefix)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q on an error", res.stdout)
			}
		})
	}
}

// TestBatchesSubmitWait: --wait follows the batch to its end, with
// progress lines (stderr is not a terminal) of subjects done out of the
// total and a rate, then a summary; it exits 0 when the batch completed
// and 4 when it failed.
func TestBatchesSubmitWait(t *testing.T) {
	f := newFakeBatchAPI(t)
	path := subjectsFile(t, threeSubjects...)
	f.progress("b-new",
		fakeBatch("b-new", lethe.RequestRunning, 3, 1, 0),
		fakeBatch("b-new", lethe.RequestRunning, 3, 2, 0),
		fakeBatch("b-new", lethe.RequestCompleted, 3, 3, 0))
	res := f.lethe(nil, "submit", path, "--wait", "--poll-interval", "10ms")
	wantOK(t, "batches submit --wait", res)
	if got := field(t, res.stdout, "STATUS"); got != "completed" {
		t.Errorf("submit --wait ended %q, want completed\n%s", got, res.stdout)
	}
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	wantLines := []*regexp.Regexp{
		regexp.MustCompile(`^batch b-new pending: 0/3 subjects done$`),
		regexp.MustCompile(`^batch b-new running: 1/3 subjects done, [0-9.]+ subjects/s, ETA [0-9hms.]+$`),
		regexp.MustCompile(`^batch b-new completed: 3/3 subjects done, [0-9.]+ subjects/s$`),
		regexp.MustCompile(`^batch b-new completed: 3 subjects in 10s, 0.3 subjects/s; 3 completed, 0 failed, 0 canceled$`),
	}
	if len(lines) != len(wantLines) {
		t.Fatalf("progress\n%s\nwant %d lines: one per change of status, then the summary", res.stderr, len(wantLines))
	}
	for i, re := range wantLines {
		if !re.MatchString(lines[i]) {
			t.Errorf("progress line %d %q does not match %s", i+1, lines[i], re)
		}
	}

	f.progress("b-new",
		fakeBatch("b-new", lethe.RequestRunning, 3, 1, 0),
		fakeBatch("b-new", lethe.RequestFailed, 3, 2, 1))
	res = f.lethe(nil, "submit", path, "--wait", "--poll-interval", "10ms", "--json")
	if res.code != exitRequestFailed {
		t.Fatalf("--wait on a failing batch: exit %d, want %d; stderr %q", res.code, exitRequestFailed, res.stderr)
	}
	var b lethe.Batch
	if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || b.Status != lethe.RequestFailed {
		t.Errorf("--wait --json printed %q (%v), want the failed batch", res.stdout, err)
	}
	if !strings.HasSuffix(res.stderr, "batch b-new failed: 3 subjects in 10s, 0.3 subjects/s; 2 completed, 1 failed, 0 canceled\n"+
		"lethe: batch b-new ended failed: 1 of 3 subjects failed\n") {
		t.Errorf("stderr %q does not end with the summary and the batch's end", res.stderr)
	}
}

// TestWaitBatchWritesAPlainLineEverySoOften: off a terminal, a batch that
// moves without changing status gets a line only every few seconds, and
// its last line and the summary always.
func TestWaitBatchWritesAPlainLineEverySoOften(t *testing.T) {
	f := newFakeBatchAPI(t)
	states := []lethe.Batch{}
	for done := 1; done <= 9; done++ {
		states = append(states, fakeBatch("b-1", lethe.RequestRunning, 10, done, 0))
	}
	f.progress("b-1", append(states, fakeBatch("b-1", lethe.RequestCompleted, 10, 10, 0))...)
	c, err := apiclient.New(f.URL, fakeToken)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, b, err := waitBatch(context.Background(), c, nil, fakeBatch("b-1", lethe.RequestRunning, 10, 0, 0), time.Millisecond, &out, false)
	if err != nil || b.Status != lethe.RequestCompleted {
		t.Fatalf("waitBatch = %v, %v", b.Status, err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "batch b-1 running: 0/10 subjects done" ||
		!regexp.MustCompile(`^batch b-1 completed: 10/10 subjects done, [0-9.]+ subjects/s$`).MatchString(lines[1]) ||
		!strings.HasPrefix(lines[2], "batch b-1 completed: 10 subjects in 10s") {
		t.Errorf("plain progress\n%s\nwant the first line, the last and the summary: nine polls in a few milliseconds are not nine lines", out.String())
	}
}

// TestWaitBatchDrawsABarOnATerminal: on a terminal each poll redraws one
// line in place: the bar, done out of total, the rate and the ETA.
func TestWaitBatchDrawsABarOnATerminal(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.progress("b-1", fakeBatch("b-1", lethe.RequestRunning, 4, 2, 0), fakeBatch("b-1", lethe.RequestCompleted, 4, 4, 0))
	c, err := apiclient.New(f.URL, fakeToken)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, _, err := waitBatch(context.Background(), c, nil, fakeBatch("b-1", lethe.RequestRunning, 4, 0, 0), time.Millisecond, &out, true); err != nil {
		t.Fatal(err)
	}
	const clear = `\r\x1b\[K`
	want := regexp.MustCompile(`^` + clear + `\[-{24}\] batch b-1 running: 0/4 subjects done` +
		clear + `\[#{12}-{12}\] batch b-1 running: 2/4 subjects done, [0-9.]+ subjects/s, ETA [0-9hms.]+` +
		clear + `\[#{24}\] batch b-1 completed: 4/4 subjects done, [0-9.]+ subjects/s\n` +
		`batch b-1 completed: 4 subjects in 10s, 0.4 subjects/s; 4 completed, 0 failed, 0 canceled\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("terminal progress\n%q\ndoes not match\n%s", out.String(), want)
	}
}

// TestRateMeter: the rate spans the window and no more once the wait has
// lasted that long; the ETA follows from it.
func TestRateMeter(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	m := newRateMeter(10 * time.Second)
	if _, ok := m.rate(); ok {
		t.Error("a rate with no sample")
	}
	m.observe(t0, 0)
	if _, ok := m.rate(); ok {
		t.Error("a rate from one sample")
	}
	// 100/s for 10 s, then 10/s for 10 s.
	for s := 1; s <= 20; s++ {
		n := 100 * min(s, 10)
		if s > 10 {
			n += 10 * (s - 10)
		}
		m.observe(t0.Add(time.Duration(s)*time.Second), n)
		if s == 10 {
			if r, _ := m.rate(); r != 100 {
				t.Errorf("after 10 s at 100/s the rate is %v", r)
			}
		}
	}
	if r, _ := m.rate(); r != 10 {
		t.Errorf("after 10 s at 10/s the window's rate is %v, want 10", r)
	}
	line := batchProgress(lethe.Batch{ID: "b", Status: lethe.RequestRunning, Total: 1200, Counts: lethe.BatchCounts{Completed: 1100}}, m)
	if want := "batch b running: 1100/1200 subjects done, 10.0 subjects/s, ETA 10s"; line != want {
		t.Errorf("progress %q, want %q", line, want)
	}
}

// TestBatchesReadCommands: get shows a batch's counts and each system's,
// list and subjects show tables and pass their filters, and --json prints
// the API's answers.
func TestBatchesReadCommands(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.progress("b-7", fakeBatch("b-7", lethe.RequestRunning, 10, 6, 1))

	res := f.lethe(nil, "get", "b-7")
	wantOK(t, "batches get", res)
	for name, v := range map[string]string{"STATUS": "running", "DONE": "7/10", "SUBJECTS": "10 (1 duplicate merged)",
		"BY STATUS": "0 pending, 3 running, 6 completed, 1 failed, 0 canceled", "SUBJECT TYPES": "email,user_id", "CREATED BY": "token:ops"} {
		if got := field(t, res.stdout, name); got != v {
			t.Errorf("get: %s = %q, want %q", name, got, v)
		}
	}
	sysCols := []string{"SYSTEM", "PENDING", "DISPATCHED", "ERASED", "NOT FOUND", "RETAINED", "FAILED", "RECORDS"}
	systems := res.stdout[strings.Index(res.stdout, "SYSTEM "):]
	if got, want := tableRow(t, systems, "billing", sysCols...), []string{"billing", "0", "3", "6", "0", "0", "1", "6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("get: billing row %q, want %q", got, want)
	}
	res = f.lethe(nil, "get", "b-7", "--json")
	wantOK(t, "batches get --json", res)
	var b lethe.Batch
	if err := json.Unmarshal([]byte(res.stdout), &b); err != nil || !reflect.DeepEqual(b, fakeBatch("b-7", lethe.RequestRunning, 10, 6, 1)) {
		t.Errorf("get --json printed %q (%v), want the API's batch", res.stdout, err)
	}

	res = f.lethe(nil, "list", "--status", "completed", "--limit", "5", "--cursor", "c-1")
	wantOK(t, "batches list", res)
	if got := f.lastCall(); got != "GET /v1/erasure-batches?cursor=c-1&limit=5&status=completed" {
		t.Errorf("list called %q", got)
	}
	listCols := []string{"ID", "STATUS", "DONE", "FAILED", "SUBJECT TYPES", "CREATED", "DEADLINE", "OVERDUE", "DRY RUN"}
	if got := tableRow(t, res.stdout, "b-1", listCols...); got[1] != "completed" || got[2] != "4/4" || got[3] != "0" || got[4] != "email,user_id" {
		t.Errorf("list row %q", got)
	}
	if res.stderr != "more: lethe batches list --status completed --cursor c-2\n" {
		t.Errorf("list stderr %q, want the next page's command", res.stderr)
	}
	res = f.lethe(nil, "list", "--json")
	wantOK(t, "batches list --json", res)
	if v := mustJSON(t, res).(map[string]any); v["next_cursor"] != "c-2" || len(v["items"].([]any)) != 1 {
		t.Errorf("list --json printed %v", v)
	}

	res = f.lethe(nil, "subjects", "b-7", "--status", "failed", "--limit", "20")
	wantOK(t, "batches subjects", res)
	if got := f.lastCall(); got != "GET /v1/erasure-batches/b-7/subjects?limit=20&status=failed" {
		t.Errorf("subjects called %q", got)
	}
	subjectCols := []string{"ITEM", "STATUS", "SYSTEMS", "IDENTIFIERS"}
	if got, want := tableRow(t, res.stdout, "3", subjectCols...), []string{"3", "failed", "crm erased, billing failed (archive offline)", "email:d-email-3 user_id:d-user-3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("subjects row %q, want %q", got, want)
	}
	res = f.lethe(nil, "subjects", "b-7", "--json")
	wantOK(t, "batches subjects --json", res)
	if v := mustJSON(t, res).(map[string]any); len(v["items"].([]any)) != 1 {
		t.Errorf("subjects --json printed %v", v)
	}
}

// TestBatchesCancelAndRetry: cancel and retry post to the batch's routes
// (retry with the systems named, or no body) and show the answer; retry
// --wait follows the batch again.
func TestBatchesCancelAndRetry(t *testing.T) {
	f := newFakeBatchAPI(t)
	res := f.lethe(nil, "cancel", "b-7")
	wantOK(t, "batches cancel", res)
	if got := f.lastCall(); got != "POST /v1/erasure-batches/b-7/cancel" {
		t.Errorf("cancel called %q", got)
	}
	if got := field(t, res.stdout, "STATUS"); got != "canceled" {
		t.Errorf("cancel showed status %q", got)
	}

	res = f.lethe(nil, "retry", "b-7", "--system", "billing", "--system", "crm")
	wantOK(t, "batches retry", res)
	if got := f.lastCall(); got != `POST /v1/erasure-batches/b-7/retry {"systems":["billing","crm"]}` {
		t.Errorf("retry called %q", got)
	}
	if got := field(t, res.stdout, "STATUS"); got != "running" {
		t.Errorf("retry showed status %q", got)
	}
	f.progress("b-7", fakeBatch("b-7", lethe.RequestCompleted, 4, 4, 0))
	res = f.lethe(nil, "retry", "b-7", "--wait", "--poll-interval", "10ms")
	wantOK(t, "batches retry --wait", res)
	if got := f.lastCall(); got != "POST /v1/erasure-batches/b-7/retry" {
		t.Errorf("retry without --system called %q, want no body", got)
	}
	if got := field(t, res.stdout, "STATUS"); got != "completed" {
		t.Errorf("retry --wait ended %q", got)
	}
}

// TestBatchEndedExits4: a batch --wait saw fail or be canceled exits as
// a request does.
func TestBatchEndedExits4(t *testing.T) {
	for _, st := range []lethe.RequestStatus{lethe.RequestFailed, lethe.RequestCanceled} {
		if got := exitCode(oneLine(&batchEndedError{id: "b", status: st})); got != exitRequestFailed {
			t.Errorf("a batch ended %s exits %d, want %d", st, got, exitRequestFailed)
		}
	}
}

// TestHelpNamesBatches: the help text names the batches command.
func TestHelpNamesBatches(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "lethe batches <submit|get|list|subjects|cancel|retry>") {
		t.Errorf("lethe help does not name lethe batches:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"batches", "--help"}, func(string) string { return "" }, &out, io.Discard); err != nil || !strings.Contains(out.String(), "submit FILE|-") {
		t.Errorf("lethe batches --help printed %q (%v)", out.String(), err)
	}
}
