package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

const batchesPath = "/v1/erasure-batches"

// batchError is the error answer of a batch route, whose error may name
// lines.
type batchError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Lines   []int  `json:"lines"`
	} `json:"error"`
}

func (r response) batchError(t *testing.T) batchError {
	t.Helper()
	r.errorCode(t)
	var b batchError
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("error body %q is not the error shape: %v", r.body, err)
	}
	return b
}

// postNDJSON posts lines as an NDJSON batch with the query q.
func (h *harness) postNDJSON(t *testing.T, q, body string, headers map[string]string) response {
	t.Helper()
	path := batchesPath
	if q != "" {
		path += "?" + q
	}
	return h.do(t, req{method: "POST", path: path, body: body, ctype: "application/x-ndjson", headers: headers})
}

// createBatch posts an NDJSON batch that must be accepted.
func (h *harness) createBatch(t *testing.T, body string) lethe.Batch {
	t.Helper()
	res := h.postNDJSON(t, "", body, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("POST %s = %s, want 202", batchesPath, describe(res))
	}
	var b lethe.Batch
	res.decode(t, &b)
	return b
}

// nothingWritten checks that a refused submission reached neither the
// store nor the engine, and repeated no identifier value.
func (h *harness) nothingWritten(t *testing.T, res response) {
	t.Helper()
	if n := len(h.store.batchCreated); n != 0 {
		t.Errorf("store got %d batches, want none", n)
	}
	if starts, _ := h.engine.counts(); starts != 0 {
		t.Errorf("engine got %d starts, want none", starts)
	}
	if bytes.Contains(res.body, []byte(canary)) || strings.Contains(h.logs.String(), canary) {
		t.Errorf("the answer or the log repeats an identifier value: %s", res.body)
	}
}

// sharedBody has five entries (and a blank line) but three subjects: A and
// B share nothing, C shares A's email and B's user_id, so A, B and C are
// one person, merged. The canary is an identifier value like the others.
const sharedBody = `{"subject":{"email":"` + canary + `"}}
{"subject":{"user_id":"u-1"}}

{"subject":{"user_id":"u-1","email":"` + canary + `"}}
{"subject":{"email":"bo@example.com"}}
{"subject":{"phone":"+33100000000","user_id":"u-2"}}
`

func TestCreateBatchNDJSON(t *testing.T) {
	h := newHarness(t)
	res := h.postNDJSON(t, "reason=gdpr_art17&requested_by=support:ticket-7&dry_run=true", sharedBody, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("POST = %s, want 202", describe(res))
	}
	var b lethe.Batch
	res.decode(t, &b)
	if !wire.ValidID(b.ID) || res.header.Get("Location") != batchesPath+"/"+b.ID {
		t.Errorf("id %q, Location %q", b.ID, res.header.Get("Location"))
	}
	if b.Total != 3 || b.Duplicates != 2 || b.Status != lethe.RequestPending || !b.DryRun ||
		b.Reason != "gdpr_art17" || b.RequestedBy != "support:ticket-7" || b.CreatedBy != "token:all" ||
		b.WorkflowID != workflows.BatchWorkflowID(b.ID) || b.Systems == nil {
		t.Errorf("answer = %+v", b)
	}
	if !slices.Equal(b.SubjectTypes, []string{"email", "phone", "user_id"}) {
		t.Errorf("subject_types = %v", b.SubjectTypes)
	}

	if len(h.store.batchCreated) != 1 {
		t.Fatalf("store got %d batches, want 1", len(h.store.batchCreated))
	}
	in := h.store.batchCreated[0]
	d := h.digester.Sum
	want := [][]lethe.SubjectDigest{
		{{Type: "email", Digest: d("email", canary)}, {Type: "user_id", Digest: d("user_id", "u-1")}},
		{{Type: "email", Digest: d("email", "bo@example.com")}},
		{{Type: "phone", Digest: d("phone", "+33100000000")}, {Type: "user_id", Digest: d("user_id", "u-2")}},
	}
	if len(in.Subjects) != len(want) {
		t.Fatalf("store got %d subjects, want %d", len(in.Subjects), len(want))
	}
	itemIDs := map[string]bool{}
	for i, s := range in.Subjects {
		if s.Item != i || s.Chunk != 0 || !wire.ValidID(s.ItemID) || itemIDs[s.ItemID] {
			t.Errorf("subject %d = %+v", i, s)
		}
		itemIDs[s.ItemID] = true
		if !slices.Equal(s.Digests, want[i]) {
			t.Errorf("subject %d digests = %v, want %v", i, s.Digests, want[i])
		}
	}
	if len(in.Chunks) != 1 || in.Chunks[0].Chunk != 0 || !wire.ValidID(in.Chunks[0].ID) {
		t.Errorf("chunks = %+v", in.Chunks)
	}
	created := testNow.UTC().Truncate(time.Microsecond)
	if in.ID != b.ID || in.Duplicates != 2 || in.CreatedBy != "token:all" || !in.DryRun ||
		!in.CreatedAt.Equal(created) || !in.Deadline.Equal(created.Add(lethe.DefaultDeadline)) ||
		len(in.RequestHash) != 64 || in.IdempotencyKey != "" {
		t.Errorf("NewBatch = %+v", in)
	}
	if raw := mustJSON(t, in); strings.Contains(raw, canary) || strings.Contains(raw, "u-1") {
		t.Errorf("the store got identifier values: %s", raw)
	}

	if len(h.engine.batchStarts) != 1 {
		t.Fatalf("engine got %d batch starts, want 1", len(h.engine.batchStarts))
	}
	st := h.engine.batchStarts[0]
	if st.in.BatchID != b.ID || st.in.Chunks != 1 || st.in.Total != 3 || !st.in.DryRun || st.in.CommandSeed == "" ||
		!st.in.CreatedAt.Equal(created) || !st.in.Deadline.Equal(in.Deadline) {
		t.Errorf("batch input = %+v", st.in)
	}
	if len(st.chunks) != 1 || st.chunks[0].ChunkID != in.Chunks[0].ID || len(st.chunks[0].Subjects) != 3 {
		t.Fatalf("chunks = %+v", st.chunks)
	}
	first := st.chunks[0].Subjects[0]
	wantIDs := []wire.Identifier{{Type: "email", Value: canary}, {Type: "user_id", Value: "u-1"}}
	if first.Item != 0 || first.ItemID != in.Subjects[0].ItemID || !slices.Equal(first.Identifiers, wantIDs) {
		t.Errorf("the workflow's first subject = %+v, want the merged identifiers %v", first, wantIDs)
	}
	if bytes.Contains(res.body, []byte(canary)) || strings.Contains(h.logs.String(), canary) {
		t.Errorf("the answer or the log repeats an identifier value")
	}
}

// TestCreateBatchMergesTransitively: entries merge through a chain of
// shared identifiers, whatever their order, and the merged subject sits
// where its first entry was.
func TestCreateBatchMergesTransitively(t *testing.T) {
	h := newHarness(t)
	body := `{"subject":{"email":"a@x"}}
{"subject":{"user_id":"solo"}}
{"subject":{"phone":"p1"}}
{"subject":{"phone":"p1","user_id":"u"}}
{"subject":{"user_id":"u","email":"a@x"}}
{"subject":{"email":"a@x"}}
`
	b := h.createBatch(t, body)
	if b.Total != 2 || b.Duplicates != 4 {
		t.Fatalf("total %d, duplicates %d; want 2 and 4", b.Total, b.Duplicates)
	}
	subjects := h.engine.batchStarts[0].chunks[0].Subjects
	want := []wire.Identifier{{Type: "email", Value: "a@x"}, {Type: "phone", Value: "p1"}, {Type: "user_id", Value: "u"}}
	if !slices.Equal(subjects[0].Identifiers, want) || subjects[1].Identifiers[0].Value != "solo" {
		t.Errorf("subjects = %+v", subjects)
	}
}

func TestCreateBatchJSON(t *testing.T) {
	h := newHarness(t)
	body := `{"subjects":[{"email":"` + canary + `"},{"user_id":"u-1"},{"user_id":"u-1","email":"` + canary + `"},` +
		`{"email":"bo@example.com"},{"user_id":"u-2","phone":"+33100000000"}],` +
		`"reason":"gdpr_art17","requested_by":"support:ticket-7","dry_run":true}`
	res := h.do(t, req{method: "POST", path: batchesPath, body: body})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST = %s, want 202", describe(res))
	}
	var b lethe.Batch
	res.decode(t, &b)
	if b.Total != 3 || b.Duplicates != 2 || !b.DryRun || b.Reason != "gdpr_art17" {
		t.Errorf("answer = %+v", b)
	}
	// The same batch as NDJSON: the same subjects and the same hash.
	ndjson := h.postNDJSON(t, "reason=gdpr_art17&requested_by=support:ticket-7&dry_run=true", sharedBody, nil)
	if ndjson.status != http.StatusAccepted {
		t.Fatalf("NDJSON POST = %s", describe(ndjson))
	}
	j, n := h.store.batchCreated[0], h.store.batchCreated[1]
	if j.RequestHash != n.RequestHash {
		t.Errorf("the JSON and NDJSON forms of one batch hash differently")
	}
	for i := range j.Subjects {
		if !slices.Equal(j.Subjects[i].Digests, n.Subjects[i].Digests) {
			t.Errorf("subject %d: JSON %v, NDJSON %v", i, j.Subjects[i].Digests, n.Subjects[i].Digests)
		}
	}
	if bytes.Contains(res.body, []byte(canary)) || strings.Contains(h.logs.String(), canary) {
		t.Errorf("the answer or the log repeats an identifier value")
	}
}

// TestCreateBatchChunks: short subjects are cut into chunks of ChunkSize in
// item order, handed to the engine in chunk order.
func TestCreateBatchChunks(t *testing.T) {
	h := newHarness(t)
	const n = 2*workflows.ChunkSize + 500
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, "{\"subject\":{\"user_id\":\"u-%d\"}}\n", i)
	}
	b := h.createBatch(t, body.String())
	in := h.store.batchCreated[0]
	st := h.engine.batchStarts[0]
	if b.Total != n || len(in.Chunks) != 3 || st.in.Chunks != 3 || len(st.chunks) != 3 {
		t.Fatalf("total %d, chunks %d / %d / %d; want %d and 3", b.Total, len(in.Chunks), st.in.Chunks, len(st.chunks), n)
	}
	for c, size := range []int{workflows.ChunkSize, workflows.ChunkSize, 500} {
		ch := st.chunks[c]
		if ch.Chunk != c || ch.ChunkID != in.Chunks[c].ID || in.Chunks[c].Chunk != c || len(ch.Subjects) != size {
			t.Errorf("chunk %d: %d subjects, id %s (ledger %+v)", c, len(ch.Subjects), ch.ChunkID, in.Chunks[c])
		}
		if first := ch.Subjects[0]; first.Item != c*workflows.ChunkSize || first.Identifiers[0].Value != fmt.Sprintf("u-%d", first.Item) {
			t.Errorf("chunk %d starts with %+v", c, first)
		}
	}
	for i, s := range in.Subjects {
		if s.Item != i || s.Chunk != i/workflows.ChunkSize {
			t.Fatalf("subject %d is item %d of chunk %d", i, s.Item, s.Chunk)
		}
	}
}

// TestCreateBatchChunksBoundedInBytes: subjects with long values are cut
// into smaller chunks, so that no chunk's payload nears Temporal's limit.
func TestCreateBatchChunksBoundedInBytes(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("v", 1000)
	const n = 600
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, "{\"subject\":{\"user_id\":\"%s-%d\",\"email\":\"%s-%d@example.com\"}}\n", long, i, long, i)
	}
	h.createBatch(t, body.String())
	st := h.engine.batchStarts[0]
	if len(st.chunks) < 2 {
		t.Fatalf("%d subjects of 4 KB each went into %d chunk", n, len(st.chunks))
	}
	seen := 0
	for c, ch := range st.chunks {
		b, err := json.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > api.MaxChunkBytes {
			t.Errorf("chunk %d encodes to %d bytes, over %d", c, len(b), api.MaxChunkBytes)
		}
		for _, sub := range ch.Subjects {
			if sub.Item != seen {
				t.Fatalf("chunk %d holds item %d, want %d: items must stay in order", c, sub.Item, seen)
			}
			seen++
		}
	}
	if seen != n {
		t.Errorf("the chunks hold %d subjects, want %d", seen, n)
	}
}

func TestCreateBatchRefusesAFaultyLine(t *testing.T) {
	for _, tt := range []struct {
		name, line string
	}{
		{"not json", `{"subject":{"email":"` + canary + `"`},
		{"unknown field", `{"subject":{"email":"` + canary + `"},"reason":"x"}`},
		{"value as field", `{"` + canary + `":{"email":"x"}}`},
		{"empty subject", `{"subject":{}}`},
		{"no subject", `{}`},
		{"empty value", `{"subject":{"email":""}}`},
		{"bad type", `{"subject":{"E-Mail":"` + canary + `"}}`},
		{"number value", `{"subject":{"email":7}}`},
		{"two values", `{"subject":{"email":"a@x"}} {"subject":{"email":"` + canary + `"}}`},
		{"null", `null`},
		{"array", `["` + canary + `"]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var body strings.Builder
			for i := 1; i <= 10; i++ {
				switch i {
				case 7:
					body.WriteString(tt.line + "\n")
				case 4:
					body.WriteString("\n") // blank lines count
				default:
					fmt.Fprintf(&body, "{\"subject\":{\"user_id\":\"u-%d\"}}\n", i)
				}
			}
			res := h.postNDJSON(t, "", body.String(), nil)
			if res.status != http.StatusBadRequest {
				t.Fatalf("POST = %s, want 400", describe(res))
			}
			e := res.batchError(t)
			if e.Error.Code != "invalid_batch" || !slices.Equal(e.Error.Lines, []int{7}) {
				t.Errorf("error = %+v, want invalid_batch at line 7", e.Error)
			}
			if !strings.Contains(e.Error.Message, "line 7") {
				t.Errorf("message %q does not name line 7", e.Error.Message)
			}
			h.nothingWritten(t, res)
		})
	}
}

func TestCreateBatchNamesTwentyLines(t *testing.T) {
	h := newHarness(t)
	var body strings.Builder
	var bad []int
	for i := 1; i <= 60; i++ {
		if i%2 == 0 && len(bad) < 25 {
			bad = append(bad, i)
			body.WriteString(`{"subject":{"email":""}}` + "\n")
			continue
		}
		fmt.Fprintf(&body, "{\"subject\":{\"user_id\":\"u-%d\"}}\n", i)
	}
	res := h.postNDJSON(t, "", body.String(), nil)
	e := res.batchError(t)
	if res.status != http.StatusBadRequest || e.Error.Code != "invalid_batch" {
		t.Fatalf("POST = %s, want 400 invalid_batch", describe(res))
	}
	if !slices.Equal(e.Error.Lines, bad[:api.MaxBadLines]) {
		t.Errorf("lines = %v, want the first %d of %v", e.Error.Lines, api.MaxBadLines, bad)
	}
	if !strings.Contains(e.Error.Message, "25 lines") {
		t.Errorf("message %q does not count the 25 faulty lines", e.Error.Message)
	}
	h.nothingWritten(t, res)
}

// TestCreateBatchRefusesAnOverfullSubject: entries that share identifiers
// must not build a subject with more identifiers than a request may have.
func TestCreateBatchRefusesAnOverfullSubject(t *testing.T) {
	h := newHarness(t)
	var body strings.Builder
	for i := range wire.MaxIdentifiers {
		fmt.Fprintf(&body, "{\"subject\":{\"user_id\":\"u\",\"alias_%d\":\"a\"}}\n", i)
	}
	res := h.postNDJSON(t, "", body.String(), nil)
	e := res.batchError(t)
	if res.status != http.StatusBadRequest || e.Error.Code != "invalid_batch" || len(e.Error.Lines) != api.MaxBadLines || e.Error.Lines[0] != 1 {
		t.Fatalf("POST = %s, want 400 invalid_batch naming the first lines", describe(res))
	}
	h.nothingWritten(t, res)
}

// linesReader makes an NDJSON body of n lines, line(i) each, as it is
// read, so that a large body is never built in memory.
type linesReader struct {
	n, i    int
	line    func(i int) string
	pending []byte
}

func streamLines(n int, line func(i int) string) io.Reader {
	return &linesReader{n: n, line: line}
}

func (r *linesReader) Read(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		if len(r.pending) == 0 {
			if r.i == r.n {
				break
			}
			r.pending = []byte(r.line(r.i))
			r.i++
		}
		c := copy(p[written:], r.pending)
		r.pending = r.pending[c:]
		written += c
	}
	if written == 0 {
		return 0, io.EOF
	}
	return written, nil
}

// TestCreateBatchTooManySubjects: entries count, not distinct subjects:
// lethe.MaxBatchSubjects entries of one person are taken, one more is not.
func TestCreateBatchTooManySubjects(t *testing.T) {
	same := func(int) string { return `{"subject":{"user_id":"u"}}` + "\n" }
	t.Run("at the limit", func(t *testing.T) {
		h := newHarness(t)
		res := h.do(t, req{method: "POST", path: batchesPath, reader: streamLines(lethe.MaxBatchSubjects, same), ctype: "application/x-ndjson"})
		var b lethe.Batch
		res.decode(t, &b)
		if res.status != http.StatusAccepted || b.Total != 1 || b.Duplicates != lethe.MaxBatchSubjects-1 {
			t.Fatalf("POST = %d, total %d, duplicates %d; want 202, 1, %d", res.status, b.Total, b.Duplicates, lethe.MaxBatchSubjects-1)
		}
	})
	t.Run("over it", func(t *testing.T) {
		h := newHarness(t)
		res := h.do(t, req{method: "POST", path: batchesPath, reader: streamLines(lethe.MaxBatchSubjects+1, same), ctype: "application/x-ndjson"})
		if res.status != http.StatusRequestEntityTooLarge || res.errorCode(t) != "too_many_subjects" {
			t.Fatalf("POST = %s, want 413 too_many_subjects", describe(res))
		}
		h.nothingWritten(t, res)
	})
}

func TestCreateBatchBodyTooLarge(t *testing.T) {
	h := newHarness(t)
	// One valid line, then one line longer than the limit: skipped as too
	// long past its first MiB, until the body passes its limit.
	long := strings.Repeat("a", 64<<10)
	body := streamLines(api.MaxBatchBodyBytes/len(long)+2, func(i int) string {
		if i == 0 {
			return `{"subject":{"user_id":"u"}}` + "\n"
		}
		return long
	})
	res := h.do(t, req{method: "POST", path: batchesPath, reader: body, ctype: "application/x-ndjson"})
	if res.status != http.StatusRequestEntityTooLarge || res.errorCode(t) != "body_too_large" {
		t.Fatalf("POST = %s, want 413 body_too_large", describe(res))
	}
	h.nothingWritten(t, res)

	// A body that says it is too large is refused before it is read, in
	// either form.
	for _, ctype := range []string{"application/json", "application/x-ndjson"} {
		h = newHarness(t)
		pr, _ := io.Pipe() // never written: the handler must not wait for it
		r := httptest.NewRequest("POST", batchesPath, pr)
		r.ContentLength = api.MaxBatchBodyBytes + 1
		r.Header.Set("Content-Type", ctype)
		r.Header.Set("Authorization", "Bearer "+allScopesToken)
		w := httptest.NewRecorder()
		h.handler.ServeHTTP(w, r)
		res = response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
		if res.status != http.StatusRequestEntityTooLarge || res.errorCode(t) != "body_too_large" {
			t.Fatalf("%s POST of a declared %d bytes = %s, want 413 body_too_large", ctype, r.ContentLength, describe(res))
		}
		h.nothingWritten(t, res)
	}
}

// TestCreateBatchLongLine: a line longer than a single request's body is
// faulty, and the lines after it are still read.
func TestCreateBatchLongLine(t *testing.T) {
	h := newHarness(t)
	body := `{"subject":{"user_id":"u-1"}}` + "\n" +
		`{"subject":{"email":"` + strings.Repeat("a", api.MaxBatchLineBytes) + `"}}` + "\n" +
		`{"subject":{"email":""}}`
	res := h.postNDJSON(t, "", body, nil)
	e := res.batchError(t)
	if res.status != http.StatusBadRequest || !slices.Equal(e.Error.Lines, []int{2, 3}) {
		t.Fatalf("POST = %s, want 400 naming lines 2 and 3", describe(res))
	}
	h.nothingWritten(t, res)
}

func TestCreateBatchRefusals(t *testing.T) {
	ok := `{"subject":{"email":"` + canary + `"}}`
	for _, tt := range []struct {
		name   string
		rq     req
		status int
		code   string
	}{
		{"empty ndjson", req{body: "", ctype: "application/x-ndjson"}, 400, "empty_batch"},
		{"blank lines only", req{body: "\n  \n\r\n", ctype: "application/x-ndjson"}, 400, "empty_batch"},
		{"empty json", req{body: `{"subjects":[]}`}, 400, "empty_batch"},
		{"json without subjects", req{body: `{"reason":"x"}`}, 400, "empty_batch"},
		{"text/plain", req{body: ok, ctype: "text/plain"}, 415, "unsupported_media_type"},
		{"no content type", req{body: ok, ctype: "-"}, 415, "unsupported_media_type"},
		{"ndjson with a parameter", req{body: ok, ctype: "application/x-ndjson; profile=x"}, 415, "unsupported_media_type"},
		{"unknown query parameter", req{path: "?dryrun=true", body: ok, ctype: "application/x-ndjson"}, 400, "unknown_parameter"},
		{"value as query parameter", req{path: "?" + canary + "=1", body: ok, ctype: "application/x-ndjson"}, 400, "unknown_parameter"},
		{"dry_run not a bool", req{path: "?dry_run=yes", body: ok, ctype: "application/x-ndjson"}, 400, "invalid_parameter"},
		{"reason twice", req{path: "?reason=a&reason=b", body: ok, ctype: "application/x-ndjson"}, 400, "invalid_parameter"},
		{"reason too long", req{path: "?reason=" + strings.Repeat("r", 257), body: ok, ctype: "application/x-ndjson"}, 400, "field_too_long"},
		{"unknown policy", req{path: "?policy=nope", body: ok, ctype: "application/x-ndjson"}, 400, "unknown_policy"},
		{"deadline not a time", req{path: "?deadline=soon", body: ok, ctype: "application/x-ndjson"}, 400, "invalid_deadline"},
		{"deadline past", req{path: "?deadline=2020-01-01T00:00:00Z", body: ok, ctype: "application/x-ndjson"}, 400, "invalid_deadline"},
		{"json with query", req{path: "?reason=x", body: `{"subjects":[{"email":"a"}]}`}, 400, "unknown_parameter"},
		{"json syntax", req{body: `{"subjects":[{"email":"` + canary + `"}`}, 400, "invalid_json"},
		{"json not an object", req{body: `["` + canary + `"]`}, 400, "invalid_json"},
		{"json unknown field", req{body: `{"subjects":[{"email":"a"}],"priority":1}`}, 400, "unknown_field"},
		{"json value as field", req{body: `{"` + canary + `":1}`}, 400, "unknown_field"},
		{"json subjects twice", req{body: `{"subjects":[{"email":"a"}],"subjects":[{"email":"b"}]}`}, 400, "invalid_json"},
		{"json subjects not a list", req{body: `{"subjects":{"email":"a"}}`}, 400, "invalid_json"},
		{"json reason a number", req{body: `{"subjects":[{"email":"a"}],"reason":1}`}, 400, "invalid_json"},
		{"json trailing data", req{body: `{"subjects":[{"email":"a"}]} {}`}, 400, "invalid_json"},
		{"json deadline not a time", req{body: `{"subjects":[{"email":"a"}],"deadline":"` + canary + `"}`}, 400, "invalid_deadline"},
		{"bad idempotency key", req{body: ok, ctype: "application/x-ndjson", headers: map[string]string{"Idempotency-Key": ""}}, 400, "invalid_idempotency_key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.rq.method, tt.rq.path = "POST", batchesPath+tt.rq.path
			res := h.do(t, tt.rq)
			if res.status != tt.status || res.batchError(t).Error.Code != tt.code {
				t.Fatalf("POST = %s, want %d %s", describe(res), tt.status, tt.code)
			}
			h.nothingWritten(t, res)
		})
	}
}

// TestCreateBatchJSONNumbersEntries: in the JSON form, faulty subjects are
// named by their position in "subjects".
func TestCreateBatchJSONNumbersEntries(t *testing.T) {
	h := newHarness(t)
	body := `{"subjects":[{"email":"a"},{"email":7},{"user_id":"u"},{},"` + canary + `"]}`
	res := h.do(t, req{method: "POST", path: batchesPath, body: body})
	e := res.batchError(t)
	if res.status != http.StatusBadRequest || e.Error.Code != "invalid_batch" || !slices.Equal(e.Error.Lines, []int{2, 4, 5}) {
		t.Fatalf("POST = %s, want 400 invalid_batch naming entries 2, 4 and 5", describe(res))
	}
	if !strings.Contains(e.Error.Message, "entry 2") {
		t.Errorf("message %q does not name entry 2", e.Error.Message)
	}
	h.nothingWritten(t, res)
}

func TestCreateBatchPolicy(t *testing.T) {
	h := newHarness(t)
	res := h.postNDJSON(t, "policy=ccpa", `{"subject":{"user_id":"u"}}`, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("POST = %s", describe(res))
	}
	created := testNow.UTC().Truncate(time.Microsecond)
	if got, want := h.store.batchCreated[0].Deadline, created.Add(api.DefaultPolicies["ccpa"]); !got.Equal(want) {
		t.Errorf("deadline = %v, want %v", got, want)
	}
	res = h.do(t, req{method: "POST", path: batchesPath, body: `{"subjects":[{"user_id":"u"}],"deadline":"2026-12-01T00:00:00Z"}`})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST = %s", describe(res))
	}
	if got := h.store.batchCreated[1].Deadline; !got.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("deadline = %v, want the one given", got)
	}
	if h.store.batchCreated[0].RequestHash == h.store.batchCreated[1].RequestHash {
		t.Errorf("batches with different deadlines hash alike")
	}
}

func TestCreateBatchIdempotency(t *testing.T) {
	h := newHarness(t)
	key := map[string]string{"Idempotency-Key": "import-2026-11/1"}
	body := `{"subject":{"user_id":"u-1","email":"a@x"}}` + "\n" + `{"subject":{"user_id":"u-2"}}` + "\n"
	// The same batch with its identifiers in another order and other spacing.
	same := `{ "subject": {"email": "a@x", "user_id": "u-1"} }` + "\n\n" + `{"subject":{"user_id":"u-2"}}`

	first := h.postNDJSON(t, "reason=r", body, key)
	if first.status != http.StatusAccepted || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first POST = %s, want 202 not replayed", describe(first))
	}
	again := h.postNDJSON(t, "reason=r", same, key)
	if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %s (Idempotent-Replayed %q), want 200 replayed", describe(again), again.header.Get("Idempotent-Replayed"))
	}
	var a, b lethe.Batch
	first.decode(t, &a)
	again.decode(t, &b)
	if a.ID != b.ID {
		t.Errorf("replay answered batch %s, want %s", b.ID, a.ID)
	}
	if len(h.engine.batchStarts) != 1 {
		t.Errorf("engine got %d batch starts, want 1", len(h.engine.batchStarts))
	}
	for _, other := range []struct{ q, body string }{
		{"reason=r", body + `{"subject":{"user_id":"u-3"}}`},
		{"reason=other", body},
		{"reason=r&dry_run=true", body},
	} {
		res := h.postNDJSON(t, other.q, other.body, key)
		if res.status != http.StatusConflict || res.errorCode(t) != "idempotency_conflict" {
			t.Errorf("same key, other batch (%s) = %s, want 409 idempotency_conflict", other.q, describe(res))
		}
	}
	for _, in := range h.store.batchCreated {
		if in.IdempotencyKey == "" || strings.Contains(in.IdempotencyKey, "import") {
			t.Errorf("store got idempotency key %q, want a digest", in.IdempotencyKey)
		}
	}
}

func TestCreateBatchEngineDownRecordsNothing(t *testing.T) {
	h := newHarness(t)
	h.engine.startErr = lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable", "the workflow engine is unavailable")
	res := h.postNDJSON(t, "", `{"subject":{"user_id":"u"}}`, nil)
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "temporal_unavailable" {
		t.Fatalf("POST with Temporal down = %s, want 503 temporal_unavailable", describe(res))
	}
	if len(h.store.batches) != 0 {
		t.Errorf("store kept %d batches, want none", len(h.store.batches))
	}
}

// TestBatchRoutesNeedTheirScope sends each batch route a credential
// without its scope and none at all; the refusal writes nothing.
// TestEveryRouteRefusesBadCredentials covers them with the rest; this
// names them, so that a route dropped from the table fails here.
func TestBatchRoutesNeedTheirScope(t *testing.T) {
	h := newHarness(t)
	id := "6f1c2c1e-8a9b-4c1d-9e2f-0a1b2c3d4e5f"
	digest := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		method, path string
		scope        auth.Scope
	}{
		{"POST", batchesPath, auth.ErasuresWrite},
		{"GET", batchesPath, auth.ErasuresRead},
		{"GET", batchesPath + "/" + id, auth.ErasuresRead},
		{"GET", batchesPath + "/" + id + "/subjects", auth.ErasuresRead},
		{"POST", batchesPath + "/" + id + "/cancel", auth.ErasuresAdmin},
		{"POST", batchesPath + "/" + id + "/retry", auth.ErasuresAdmin},
		{"GET", batchesPath + "/" + id + "/certificate", auth.CertificatesRead},
		{"GET", batchesPath + "/" + id + "/subjects/" + digest + "/proof", auth.CertificatesRead},
	} {
		body := ""
		if tt.method == "POST" {
			body = `{"subjects":[{"email":"` + canary + `"}]}`
		}
		res := h.do(t, req{method: tt.method, path: tt.path, body: body, headers: map[string]string{"Authorization": "-"}})
		if res.status != http.StatusUnauthorized || res.errorCode(t) != "unauthenticated" {
			t.Errorf("%s %s without a credential = %s, want 401", tt.method, tt.path, describe(res))
		}
		res = h.do(t, req{method: tt.method, path: tt.path, body: body,
			headers: map[string]string{"Authorization": "Bearer " + allButToken(tt.scope)}})
		if res.status != http.StatusForbidden || res.errorCode(t) != "insufficient_scope" {
			t.Errorf("%s %s without %s = %s, want 403", tt.method, tt.path, tt.scope, describe(res))
		}
	}
	h.nothingWritten(t, response{})
	if n := h.store.writeCount(); n != 0 {
		t.Errorf("refused calls wrote %d times", n)
	}
}

// unreadBody fails the test that reads it: a body that must be refused
// before it is read.
type unreadBody struct{ t *testing.T }

func (b unreadBody) Read([]byte) (int, error) {
	b.t.Error("the body was read")
	return 0, io.ErrUnexpectedEOF
}

// TestCreateBatchRefusesABadQueryUnread: an NDJSON batch whose parameters
// are wrong is refused before a line of it is read.
func TestCreateBatchRefusesABadQueryUnread(t *testing.T) {
	for _, q := range []string{"policy=nope", "deadline=2020-01-01T00:00:00Z", "reason=" + strings.Repeat("r", 257), "dry_run=1", "x=1"} {
		h := newHarness(t)
		res := h.do(t, req{method: "POST", path: batchesPath + "?" + q, reader: unreadBody{t}, ctype: "application/x-ndjson"})
		if res.status != http.StatusBadRequest {
			t.Errorf("POST ?%s = %s, want 400", q, describe(res))
		}
		h.nothingWritten(t, res)
	}
}
