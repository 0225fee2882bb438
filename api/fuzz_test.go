package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/wire"
)

// These targets send the API what a careless or hostile client could: any
// body, content type, Idempotency-Key, system name or query string, to the
// real handler over the package's fakes. Whatever arrives, the API must not
// panic or answer 500, must answer every 4xx in the contract's error shape,
// must write nothing when it refuses, and must never repeat what the client
// sent (identifier values above all) in an answer or a log line. `go test`
// runs the seeds below and those under testdata/fuzz/; `make fuzz` searches
// for new inputs.

// fuzzSecret is an identifier value made of characters the API's own texts
// never contain, so that finding it in an answer means it was copied there.
const fuzzSecret = "Ada Lövelace <ada@example.invalid>"

// errorCodeRe is the form of every error code of the contract.
var errorCodeRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// FuzzCreateErasure sends POST /v1/erasures any body, content type and
// Idempotency-Key; an accepted request is then replayed with its key.
func FuzzCreateErasure(f *testing.F) {
	const jsonType = "application/json"
	subject := `{"subject":{"email":"` + fuzzSecret + `","user_id":"u-123"}`
	for _, s := range []struct {
		body   string
		ctype  string
		key    string
		hasKey bool
	}{
		{subject + `}`, jsonType, "", false},
		{subject + `,"reason":"gdpr_art17","requested_by":"support:ticket-991","dry_run":true}`, jsonType + "; charset=utf-8", "ticket-991", true},
		{subject + `}`, jsonType, fuzzSecret, true},
		{subject + `}`, jsonType, "", true},
		{subject + `}`, "text/plain", "", false},
		{subject + `}`, "", "", false},
		{subject + `}`, "application/json; charset=latin1", "", false},
		{subject + `}`, "application/json; boundary=x", "", false},
		{subject + `}`, "application/json;", "", false},
		{subject + `,"` + fuzzSecret + `":1}`, jsonType, "", false},
		{`{"subject":{"` + fuzzSecret + `":"email"}}`, jsonType, "", false},
		{`{"subject":{"email":["` + fuzzSecret + `"]}}`, jsonType, "", false},
		{`{"subject":{"email":""}}`, jsonType, "", false},
		{`{"subject":{}}`, jsonType, "", false},
		{`{"subject":null}`, jsonType, "", false},
		{`{"Subject":{"Email":"` + fuzzSecret + `"}}`, jsonType, "", false},
		{`{"subject":{"email":"a","email":"` + fuzzSecret + `"}}`, jsonType, "", false},
		{`{"subject":{"email":"` + fuzzSecret + `"},"dry_run":"yes"}`, jsonType, "", false},
		{`{"subject":{"email":"` + fuzzSecret + `"},"reason":` + strconv.Quote(strings.Repeat("r", 257)) + `}`, jsonType, "", false},
		{`{"subject":{"email":"` + fuzzSecret + `"}} {"x":1}`, jsonType, "", false},
		{`{"subject":{"email":"` + fuzzSecret, jsonType, "", false},
		{`{"subject":{"email":"\ud800"}}`, jsonType, "", false},
		{`["` + fuzzSecret + `"]`, jsonType, "", false},
		{``, jsonType, "", false},
		{subject + `}`, jsonType, "a\tb", true},
		{subject + `}`, jsonType, "clé", true},
	} {
		f.Add([]byte(s.body), s.ctype, s.key, s.hasKey)
	}
	f.Fuzz(func(t *testing.T, body []byte, ctype, key string, hasKey bool) {
		h := newHarness(t)
		send := func() response {
			r := fuzzRequest(http.MethodPost, "/v1/erasures", body, ctype)
			if hasKey {
				r.Header["Idempotency-Key"] = []string{key}
			}
			return serveFuzz(h, r)
		}
		secrets := stringsIn(body)
		if hasKey {
			secrets = append(secrets, key)
		}
		res := send()
		checkAnswer(t, h, res, secrets)
		if res.status >= 300 {
			checkNothingWritten(t, h)
			return
		}
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /v1/erasures answered %s, want 202 or an error", describe(res))
		}
		e := checkCreated(t, h, res, body, secrets)
		if !hasKey {
			return
		}
		// The same key and body again is a replay: the same request,
		// nothing started a second time.
		again := send()
		checkAnswer(t, h, again, secrets)
		if again.status != http.StatusOK {
			t.Fatalf("replay with the same Idempotency-Key answered %s, want 200", describe(again))
		}
		var e2 lethe.Erasure
		again.decode(t, &e2)
		if e2.ID != e.ID {
			t.Fatalf("replay answered request %s, want %s", e2.ID, e.ID)
		}
		if starts, _ := h.engine.counts(); starts != 1 {
			t.Fatalf("replay started %d workflows in all, want 1", starts)
		}
	})
}

// checkCreated asserts what an accepted erasure request did: one request
// recorded with digests only, one workflow started with the very values
// sent, and an answer that names the identifier types and no value.
func checkCreated(t *testing.T, h *harness, res response, body []byte, secrets []string) lethe.Erasure {
	t.Helper()
	var sent struct {
		Subject map[string]string `json:"subject"`
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatalf("the API accepted a body encoding/json refuses: %v", err)
	}
	var e lethe.Erasure
	res.decode(t, &e)
	types := slices.Sorted(maps.Keys(sent.Subject))
	if !wire.ValidID(e.ID) || e.Status != lethe.RequestPending || !slices.Equal(e.SubjectTypes, types) {
		t.Fatalf("accepted request = %+v, want a new pending request of types %v", e, types)
	}
	if got := res.header.Get("Location"); got != "/v1/erasures/"+e.ID {
		t.Errorf("Location = %q, want /v1/erasures/%s", got, e.ID)
	}

	h.store.mu.Lock()
	created := slices.Clone(h.store.created)
	h.store.mu.Unlock()
	if len(created) != 1 {
		t.Fatalf("store was asked to create %d requests, want 1", len(created))
	}
	in := created[0]
	stored := []string{in.ID, in.IdempotencyKey, in.RequestHash, in.WorkflowID}
	for _, d := range in.Subject {
		stored = append(stored, d.Type, d.Digest)
	}
	for _, s := range stored {
		if v, ok := quoted(s, secrets); ok {
			t.Fatalf("the ledger was given %q, which holds %q from the request", s, v)
		}
	}

	h.engine.mu.Lock()
	starts := slices.Clone(h.engine.starts)
	h.engine.mu.Unlock()
	if len(starts) != 1 {
		t.Fatalf("engine started %d workflows, want 1", len(starts))
	}
	got := make(map[string]string)
	for _, id := range starts[0].Subject {
		got[id.Type] = id.Value
	}
	if !maps.Equal(got, sent.Subject) {
		t.Fatalf("workflow started with a subject of types %v, want the %d identifiers sent", slices.Sorted(maps.Keys(got)), len(sent.Subject))
	}

	// Reason and requested_by are the client's own notes and are shown
	// back on purpose; nothing else may carry what it sent.
	var shown map[string]any
	res.decode(t, &shown)
	delete(shown, "reason")
	delete(shown, "requested_by")
	walkStrings(shown, func(s string) {
		if v, ok := quoted(s, secrets); ok {
			t.Fatalf("answer %s repeats %q from the request", res.body, v)
		}
	})
	return e
}

// FuzzPutSystem sends PUT /v1/systems/{name} any name, body and content
// type.
func FuzzPutSystem(f *testing.F) {
	const jsonType = "application/json"
	for _, s := range []struct {
		name  string
		body  string
		ctype string
	}{
		{"orders", `{"identifiers":["user_id","email"]}`, jsonType},
		{"orders", `{"identifiers":["user_id","email","user_id"],"produces":["stripe_customer_id"],"topic":"lethe.erasure.orders",` +
			`"owner":"team-orders","description":"orders and invoices","confirm_within":"72h"}`, jsonType + "; charset=UTF-8"},
		{"orders", `{"identifiers":["user_id"],"confirm_within":"59s"}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"confirm_within":"9223372036854775807ns"}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"confirm_within":"` + fuzzSecret + `"}`, jsonType},
		{"orders", `{"identifiers":["` + fuzzSecret + `"]}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"produces":[null]}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"topic":"orders.dlq"}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"topic":"` + fuzzSecret + `"}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"topic":".."}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"owner":"` + strings.Repeat("é", 1025) + `"}`, jsonType},
		{"orders", `{"identifiers":["user_id"],"` + fuzzSecret + `":1}`, jsonType},
		{"orders", `{"identifiers":[]}`, jsonType},
		{"orders", `{"identifiers":"user_id"}`, jsonType},
		{"orders", `{"identifiers":["user_id"]}`, "text/json"},
		{"confirmations", `{"identifiers":["user_id"]}`, jsonType},
		{"Orders", `{"identifiers":["user_id"]}`, jsonType},
		{fuzzSecret, `{"identifiers":["user_id"]}`, jsonType},
		{"a/b", `{"identifiers":["user_id"]}`, jsonType},
		{"..", `{"identifiers":["user_id"]}`, jsonType},
		{"", `{"identifiers":["user_id"]}`, jsonType},
		{strings.Repeat("a", 64), `{"identifiers":["user_id"]}`, jsonType},
	} {
		f.Add(s.name, []byte(s.body), s.ctype)
	}
	f.Fuzz(func(t *testing.T, name string, body []byte, ctype string) {
		h := newHarness(t)
		res := serveFuzz(h, fuzzRequest(http.MethodPut, "/v1/systems/"+url.PathEscape(name), body, ctype))
		checkAnswer(t, h, res, append(stringsIn(body), name))
		if res.status >= 300 {
			checkNothingWritten(t, h)
			return
		}
		if res.status != http.StatusCreated {
			t.Fatalf("PUT of a new system answered %s, want 201 or an error", describe(res))
		}
		var sys lethe.System
		res.decode(t, &sys)
		switch {
		case sys.Name != name:
			t.Fatalf("stored system is named %q, want %q", sys.Name, name)
		case len(sys.Identifiers) == 0 || !slices.IsSorted(sys.Identifiers) || slices.ContainsFunc(sys.Identifiers, invalidType):
			t.Fatalf("stored identifiers %q: want a non-empty sorted list of identifier types", sys.Identifiers)
		case !slices.IsSorted(sys.Produces) || slices.ContainsFunc(sys.Produces, invalidType):
			t.Fatalf("stored produces %q: want a sorted list of identifier types", sys.Produces)
		case sys.Topic == "" || sys.Topic == wire.ConfirmationsTopic || strings.HasSuffix(sys.Topic, wire.DLQSuffix):
			t.Fatalf("stored topic %q is not one commands may use", sys.Topic)
		case time.Duration(sys.ConfirmWithin) < api.MinConfirmWithin || time.Duration(sys.ConfirmWithin) > api.MaxConfirmWithin:
			t.Fatalf("stored confirm_within %v is out of bounds", time.Duration(sys.ConfirmWithin))
		}
		h.topics.mu.Lock()
		ensured := slices.Clone(h.topics.ensured)
		h.topics.mu.Unlock()
		if want := []string{sys.Topic, wire.DLQTopic(sys.Topic)}; !slices.Equal(ensured, want) {
			t.Fatalf("topics ensured = %q, want %q", ensured, want)
		}
		if n := h.store.writeCount(); n != 1 {
			t.Fatalf("store recorded %d writes, want 1", n)
		}
	})
}

func invalidType(t string) bool { return !lethe.ValidIdentifierType(t) }

// FuzzListErasures sends GET /v1/erasures any query string, over a ledger
// holding three requests.
func FuzzListErasures(f *testing.F) {
	for _, q := range []string{
		"",
		"status=running&limit=2",
		"status=pending&limit=200&cursor=c1",
		"limit=1&cursor=c2",
		"limit=0",
		"limit=201",
		"limit=-1",
		"limit=1e2",
		"limit=",
		"limit=99999999999999999999",
		"status=done",
		"status=",
		"cursor=" + url.QueryEscape(fuzzSecret),
		"status=" + url.QueryEscape(fuzzSecret),
		"limit=" + url.QueryEscape(fuzzSecret),
		"status=running&status=failed",
		"limit=%zz",
		"email=" + url.QueryEscape(fuzzSecret),
		";;&&==",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		h := newHarness(t)
		for range 3 {
			h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		}
		before := h.store.writeCount()
		r := fuzzRequest(http.MethodGet, "/v1/erasures", nil, "")
		r.URL.RawQuery = query
		res := serveFuzz(h, r)
		var secrets []string
		for k, vs := range r.URL.Query() {
			secrets = append(append(secrets, k), vs...)
		}
		checkAnswer(t, h, res, secrets)
		if n := h.store.writeCount(); n != before {
			t.Fatalf("listing wrote %d times", n-before)
		}
		if res.status >= 300 {
			if code := res.errorCode(t); res.status != http.StatusBadRequest || !slices.Contains([]string{"invalid_status", "invalid_limit", "invalid_cursor"}, code) {
				t.Fatalf("listing answered %s, want 200 or 400 invalid_status, invalid_limit or invalid_cursor", describe(res))
			}
			return
		}
		if res.status != http.StatusOK {
			t.Fatalf("listing answered %s, want 200 or 400", describe(res))
		}
		var page struct {
			Items      []lethe.Erasure `json:"items"`
			NextCursor string          `json:"next_cursor"`
		}
		res.decode(t, &page)
		h.store.mu.Lock()
		filter := h.store.lastFilter
		h.store.mu.Unlock()
		if page.Items == nil || len(page.Items) > filter.Limit || filter.Limit < 1 || filter.Limit > api.MaxListLimit {
			t.Fatalf("page of %d items under limit %d: want a list within a limit of 1 to %d", len(page.Items), filter.Limit, api.MaxListLimit)
		}
		for _, e := range page.Items {
			if filter.Status != "" && e.Status != filter.Status {
				t.Fatalf("listing by status %q shows a request %q", filter.Status, e.Status)
			}
		}
	})
}

// fuzzRequest builds a request as the server would receive it; ctype ""
// sends no Content-Type at all.
func fuzzRequest(method, target string, body []byte, ctype string) *http.Request {
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+allScopesToken)
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	return r
}

func serveFuzz(h *harness, r *http.Request) response {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, r.WithContext(ctx))
	return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// checkAnswer asserts what holds of every answer: no 5xx, a redirect only
// with its Location, every 4xx in the error shape with a snake_case code,
// and neither the error message nor any log line repeating a secret.
func checkAnswer(t *testing.T, h *harness, res response, secrets []string) {
	t.Helper()
	switch {
	case res.status >= 500:
		t.Fatalf("answered %s to a client's request; a client's mistake is never a 5xx", describe(res))
	case res.status >= 400:
		code := res.errorCode(t)
		if !errorCodeRe.MatchString(code) {
			t.Fatalf("error code %q is not snake_case", code)
		}
		var b struct {
			Error struct{ Message string } `json:"error"`
		}
		res.decode(t, &b)
		if v, ok := quoted(b.Error.Message, secrets); ok {
			t.Fatalf("error message %q repeats %q from the request", b.Error.Message, v)
		}
	case res.status >= 300:
		if res.header.Get("Location") == "" {
			t.Fatalf("answered %s without a Location", describe(res))
		}
	}
	for line := range strings.Lines(h.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["level"] == "ERROR" {
			t.Fatalf("the request logged an error: %s", line)
		}
		walkStrings(rec, func(s string) {
			if v, ok := quoted(s, secrets); ok {
				t.Fatalf("log line %s repeats %q from the request", line, v)
			}
		})
	}
}

func checkNothingWritten(t *testing.T, h *harness) {
	t.Helper()
	if n := h.store.writeCount(); n != 0 {
		t.Fatalf("a refused request made %d store writes, want none", n)
	}
	if starts, cancels := h.engine.counts(); starts != 0 || cancels != 0 {
		t.Fatalf("a refused request made %d starts and %d cancels, want none", starts, cancels)
	}
	if n := h.topics.count(); n != 0 {
		t.Fatalf("a refused request created %d topics, want none", n)
	}
}

// stringsIn returns every JSON string of body, keys included, up to its
// first syntax error, decoded as the API's decoder sees them: the values a
// request carried, even one the API refuses.
func stringsIn(body []byte) []string {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if s, ok := tok.(string); ok {
			out = append(out, s)
		}
	}
}

// quoted reports the first secret that text contains. Only secrets holding
// a character the API never writes on its own are considered (fuzzSecret
// is one): the API's answers do name identifier types, field names and
// statuses, which a secret of plain letters could equal by chance.
func quoted(text string, secrets []string) (string, bool) {
	for _, s := range secrets {
		if distinctive(s) && strings.Contains(text, s) {
			return s, true
		}
	}
	return "", false
}

func distinctive(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return r >= 0x80 || r < 0x20 || strings.ContainsRune("@#~!&|<>`*\\", r)
	}) >= 0
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case map[string]any:
		for k, x := range v {
			fn(k)
			walkStrings(x, fn)
		}
	case []any:
		for _, x := range v {
			walkStrings(x, fn)
		}
	}
}
