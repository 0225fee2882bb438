package connectors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/wire"
)

// fakeLethe serves GET /v1/suppressions as Lethe's API does: entries in the
// order they were added, filtered by since and type, paged by limit, with a
// next_cursor on every page that delivered something (the last one too),
// has_more, the contract's error bodies, and cursor_expired for a cursor
// issued before the server "moved" (epoch).
type fakeLethe struct {
	mu      sync.Mutex
	entries []fakeEntry
	token   string       // when set, required as a bearer token
	epoch   int          // cursors of another epoch have expired
	fail    []int        // statuses to answer the next requests with
	queries []url.Values // every request's query, in order
}

type fakeEntry struct {
	RequestID string    `json:"request_id"`
	Type      string    `json:"type"`
	Digest    string    `json:"digest"`
	ErasedAt  time.Time `json:"erased_at"`
}

func (f *fakeLethe) add(es ...fakeEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, es...)
}

func (f *fakeLethe) seen() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

func (f *fakeLethe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodGet || r.URL.Path != "/v1/suppressions" {
		writeErr(w, http.StatusNotFound, "route_not_found", "no route")
		return
	}
	q := r.URL.Query()
	f.queries = append(f.queries, q)
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		writeErr(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
		return
	}
	if len(f.fail) > 0 {
		status := f.fail[0]
		f.fail = f.fail[1:]
		if status == http.StatusBadGateway {
			w.WriteHeader(status)
			fmt.Fprint(w, "<html>bad gateway</html>")
			return
		}
		writeErr(w, status, "database_unavailable", "the database is unavailable")
		return
	}
	var since time.Time
	if q.Has("since") {
		var err error
		if since, err = time.Parse(time.RFC3339Nano, q.Get("since")); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid_since", "since must be an RFC 3339 time")
			return
		}
	}
	limit := 500
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > 1000 {
			writeErr(w, http.StatusBadRequest, "invalid_limit", "limit must be from 1 to 1000")
			return
		}
		limit = n
	}
	cursor := q.Get("cursor")
	start := 0
	if cursor != "" {
		var epoch int
		if _, err := fmt.Sscanf(cursor, "e%dp%d", &epoch, &start); err != nil || start < 0 || start > len(f.entries) {
			writeErr(w, http.StatusBadRequest, "invalid_cursor", "the cursor is not one this API issued")
			return
		}
		if epoch != f.epoch {
			writeErr(w, http.StatusBadRequest, "cursor_expired", "start again from since")
			return
		}
	}
	type page struct {
		Items      []fakeEntry `json:"items"`
		NextCursor string      `json:"next_cursor,omitempty"`
		HasMore    bool        `json:"has_more"`
	}
	p := page{Items: []fakeEntry{}, NextCursor: cursor}
	for i := start; i < len(f.entries); i++ {
		e := f.entries[i]
		if e.ErasedAt.Before(since) || (q.Has("type") && e.Type != q.Get("type")) {
			continue
		}
		if len(p.Items) == limit {
			p.HasMore = true
			break
		}
		p.Items = append(p.Items, e)
		p.NextCursor = fmt.Sprintf("e%dp%d", f.epoch, i+1)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}

var (
	restoreTime = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	subjectKey  = bytes.Repeat([]byte{0x42}, digest.MinKeyBytes)
)

func testDigester(t *testing.T, key []byte) *digest.Digester {
	t.Helper()
	d, err := digest.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// erased is an entry for identifier idType=value, erased by request at at.
func erased(d *digest.Digester, request, idType, value string, at time.Time) fakeEntry {
	return fakeEntry{RequestID: request, Type: idType, Digest: d.Sum(idType, value), ErasedAt: at}
}

// newList starts a fake Lethe and a list over it; modify adjusts the config.
func newList(t *testing.T, modify func(*connectors.SuppressionConfig)) (*connectors.SuppressionList, *fakeLethe, *digest.Digester) {
	t.Helper()
	f := &fakeLethe{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	d := testDigester(t, subjectKey)
	cfg := connectors.SuppressionConfig{URL: srv.URL, Digester: d, Since: restoreTime, HTTPClient: srv.Client()}
	if modify != nil {
		modify(&cfg)
	}
	l, err := connectors.NewSuppressionList(cfg)
	if err != nil {
		t.Fatalf("NewSuppressionList: %v", err)
	}
	return l, f, d
}

func ids(pairs ...string) []wire.Identifier {
	var out []wire.Identifier
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, wire.Identifier{Type: pairs[i], Value: pairs[i+1]})
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSuppressionListFetchesOnlyWhatIsNew syncs, has Lethe list more, and
// checks that the next sync asks from where the last one stopped and adds
// only the new entries.
func TestSuppressionListFetchesOnlyWhatIsNew(t *testing.T) {
	l, f, d := newList(t, nil)
	ctx := ctxT(t)
	r1, r2 := uuid.NewString(), uuid.NewString()
	at := restoreTime.Add(time.Hour)
	f.add(erased(d, r1, "email", "ada@example.com", at), erased(d, r1, "user_id", "u-1", at), erased(d, r2, "user_id", "u-2", at))

	if n, err := l.Sync(ctx); err != nil || n != 3 {
		t.Fatalf("first Sync = %d, %v; want 3 new", n, err)
	}
	f.add(erased(d, uuid.NewString(), "email", "bob@example.com", at.Add(time.Hour)))
	if n, err := l.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("second Sync = %d, %v; want 1 new", n, err)
	}
	if n, err := l.Sync(ctx); err != nil || n != 0 {
		t.Fatalf("third Sync = %d, %v; want nothing new", n, err)
	}
	qs := f.seen()
	if len(qs) != 3 {
		t.Fatalf("%d requests, want one per sync: %v", len(qs), qs)
	}
	wantCursors := []string{"", "e0p3", "e0p4"}
	for i, q := range qs {
		if q.Get("cursor") != wantCursors[i] || q.Get("since") != "2026-11-01T00:00:00Z" {
			t.Errorf("request %d = %v, want cursor %q and since 2026-11-01T00:00:00Z", i, q, wantCursors[i])
		}
	}
	if l.Len() != 4 {
		t.Errorf("Len = %d, want 4", l.Len())
	}
}

// TestSuppressedMatchesValuesThroughTheDigester asks about identifiers by
// value and checks that exactly those Lethe erased, under the same type and
// key, are reported.
func TestSuppressedMatchesValuesThroughTheDigester(t *testing.T) {
	l, f, d := newList(t, nil)
	ctx := ctxT(t)
	at := restoreTime.Add(time.Hour)
	f.add(erased(d, uuid.NewString(), "email", "ada@example.com", at), erased(d, uuid.NewString(), "user_id", "u-1", at))

	asked := ids("email", "ada@example.com", "email", "bob@example.com", "user_id", "ada@example.com", "user_id", "u-1", "email", "ADA@example.com")
	got, err := l.Suppressed(ctx, asked)
	if err != nil {
		t.Fatalf("Suppressed: %v", err)
	}
	if want := ids("email", "ada@example.com", "user_id", "u-1"); !reflect.DeepEqual(got, want) {
		t.Errorf("Suppressed = %v, want %v", got, want)
	}

	t.Run("another key matches nothing", func(t *testing.T) {
		other, _, _ := newList(t, func(c *connectors.SuppressionConfig) {
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			c.URL = srv.URL
			c.HTTPClient = srv.Client()
			c.Digester = testDigester(t, bytes.Repeat([]byte{0x43}, digest.MinKeyBytes))
		})
		got, err := other.Suppressed(ctx, asked)
		if err != nil || len(got) != 0 {
			t.Errorf("Suppressed with another key = %v, %v; want nothing", got, err)
		}
	})
}

// TestSuppressionListPagesAndFilters checks the parameters a sync sends:
// the page size, since, and one feed per configured type, each paged to
// its end and resumed from its own cursor.
func TestSuppressionListPagesAndFilters(t *testing.T) {
	since := time.Date(2026, 11, 1, 1, 0, 0, 500, time.FixedZone("CET", 3600))
	l, f, d := newList(t, func(c *connectors.SuppressionConfig) {
		c.PageSize = 2
		c.Since = since
		c.Types = []string{"user_id", "email", "user_id"}
	})
	ctx := ctxT(t)
	at := since.Add(time.Minute)
	for i := range 5 {
		r := uuid.NewString()
		f.add(erased(d, r, "email", fmt.Sprintf("e%d", i), at), erased(d, r, "user_id", fmt.Sprintf("u%d", i), at),
			erased(d, r, "device_id", fmt.Sprintf("d%d", i), at))
	}
	f.add(erased(d, uuid.NewString(), "email", "too-early", since.Add(-time.Nanosecond)))
	if n, err := l.Sync(ctx); err != nil || n != 10 {
		t.Fatalf("Sync = %d, %v; want the 10 emails and user ids since", n, err)
	}
	var got []string
	for _, q := range f.seen() {
		got = append(got, fmt.Sprintf("%s %s %s %s", q.Get("type"), q.Get("limit"), q.Get("since"), q.Get("cursor")))
	}
	want := []string{
		"email 2 2026-11-01T00:00:00.0000005Z ",
		"email 2 2026-11-01T00:00:00.0000005Z e0p4",
		"email 2 2026-11-01T00:00:00.0000005Z e0p10",
		"user_id 2 2026-11-01T00:00:00.0000005Z ",
		"user_id 2 2026-11-01T00:00:00.0000005Z e0p5",
		"user_id 2 2026-11-01T00:00:00.0000005Z e0p11",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s, err := l.Suppressed(ctx, ids("email", "e4", "user_id", "u0", "email", "too-early")); err != nil || len(s) != 2 {
		t.Errorf("Suppressed = %v, %v; want e4 and u0", s, err)
	}
	_, err := l.Suppressed(ctx, ids("device_id", "d1"))
	if err == nil || !strings.Contains(err.Error(), "device_id") {
		t.Errorf("Suppressed of a type outside Types = %v, want an error naming it", err)
	}
	if _, err := l.Suppressed(ctx, ids("Device-Id", "d1")); err == nil {
		t.Errorf("Suppressed of a malformed type answered")
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestSuppressedSyncsWhenStale checks that Suppressed answers from the copy
// while it is younger than MaxAge, and syncs first once it is older.
func TestSuppressedSyncsWhenStale(t *testing.T) {
	clk := &fakeClock{now: restoreTime.Add(24 * time.Hour)}
	l, f, d := newList(t, func(c *connectors.SuppressionConfig) {
		c.MaxAge = time.Minute
		c.Now = clk.Now
	})
	ctx := ctxT(t)
	ask := ids("email", "ada@example.com")
	if got, err := l.Suppressed(ctx, ask); err != nil || len(got) != 0 {
		t.Fatalf("Suppressed = %v, %v; want nothing yet", got, err)
	}
	f.add(erased(d, uuid.NewString(), "email", "ada@example.com", restoreTime.Add(time.Hour)))
	clk.Advance(59 * time.Second)
	if got, err := l.Suppressed(ctx, ask); err != nil || len(got) != 0 {
		t.Fatalf("within MaxAge: Suppressed = %v, %v; want the copy's answer, nothing", got, err)
	}
	if n := len(f.seen()); n != 1 {
		t.Fatalf("%d requests within MaxAge, want 1", n)
	}
	clk.Advance(time.Second)
	if got, err := l.Suppressed(ctx, ask); err != nil || len(got) != 1 {
		t.Fatalf("after MaxAge: Suppressed = %v, %v; want the new entry", got, err)
	}
	if n := len(f.seen()); n != 2 {
		t.Fatalf("%d requests after MaxAge, want 2", n)
	}

	t.Run("a negative MaxAge syncs on every call", func(t *testing.T) {
		l, f, _ := newList(t, func(c *connectors.SuppressionConfig) { c.MaxAge = -1 })
		for range 3 {
			if _, err := l.Suppressed(ctx, ask); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(f.seen()); n != 3 {
			t.Errorf("%d requests for 3 calls, want 3", n)
		}
	})
}

// TestSuppressionListRestartsAfterCursorExpired plays Lethe's database
// moving to another server: the kept cursor is refused, the list reads
// again from Since, and what it knew adds nothing.
func TestSuppressionListRestartsAfterCursorExpired(t *testing.T) {
	l, f, d := newList(t, nil)
	ctx := ctxT(t)
	at := restoreTime.Add(time.Hour)
	f.add(erased(d, uuid.NewString(), "email", "a", at), erased(d, uuid.NewString(), "email", "b", at))
	if n, err := l.Sync(ctx); err != nil || n != 2 {
		t.Fatalf("Sync = %d, %v", n, err)
	}
	f.mu.Lock()
	f.epoch++
	f.mu.Unlock()
	f.add(erased(d, uuid.NewString(), "email", "c", at))
	if n, err := l.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("Sync after the move = %d, %v; want the one new entry", n, err)
	}
	qs := f.seen()
	if len(qs) != 3 || qs[1].Get("cursor") != "e0p2" || qs[2].Has("cursor") {
		t.Errorf("requests %v, want the old cursor refused and a restart without one", qs)
	}
	if n, err := l.Sync(ctx); err != nil || n != 0 || f.seen()[3].Get("cursor") != "e1p3" {
		t.Errorf("next Sync = %d, %v with %v; want nothing new from the new cursor", n, err, f.seen()[3])
	}
}

// TestSuppressionListErrors checks that Lethe's error answers reach the
// caller with their codes, and that Suppressed never answers from a list it
// could not sync.
func TestSuppressionListErrors(t *testing.T) {
	ctx := ctxT(t)
	t.Run("unavailable", func(t *testing.T) {
		l, f, d := newList(t, nil)
		f.add(erased(d, uuid.NewString(), "email", "a", restoreTime))
		f.fail = []int{http.StatusServiceUnavailable}
		_, err := l.Suppressed(ctx, ids("email", "a"))
		var apiErr *connectors.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Code != "database_unavailable" {
			t.Fatalf("Suppressed = %v, want APIError 503 database_unavailable", err)
		}
		if got, err := l.Suppressed(ctx, ids("email", "a")); err != nil || len(got) != 1 {
			t.Errorf("after Lethe is back: %v, %v", got, err)
		}
	})
	t.Run("not the contract's body", func(t *testing.T) {
		l, f, _ := newList(t, nil)
		f.fail = []int{http.StatusBadGateway}
		_, err := l.Sync(ctx)
		var apiErr *connectors.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 502 || apiErr.Code != "unexpected_answer" {
			t.Fatalf("Sync = %v, want APIError 502 unexpected_answer", err)
		}
	})
	t.Run("Token field", func(t *testing.T) {
		l, f, d := newList(t, func(c *connectors.SuppressionConfig) { c.Token = "t0ken" })
		f.token = "t0ken"
		f.add(erased(d, uuid.NewString(), "email", "a", restoreTime))
		if got, err := l.Suppressed(ctx, ids("email", "a")); err != nil || len(got) != 1 {
			t.Fatalf("with Token: %v, %v", got, err)
		}
	})
	t.Run("bearer token", func(t *testing.T) {
		l, f, d := newList(t, func(c *connectors.SuppressionConfig) {
			c.Authorize = func(r *http.Request) error {
				r.Header.Set("Authorization", "Bearer s3cret")
				return nil
			}
		})
		f.token = "s3cret"
		f.add(erased(d, uuid.NewString(), "email", "a", restoreTime))
		if got, err := l.Suppressed(ctx, ids("email", "a")); err != nil || len(got) != 1 {
			t.Fatalf("with the token: %v, %v", got, err)
		}
		bare, _, _ := newList(t, func(c *connectors.SuppressionConfig) {
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			c.URL, c.HTTPClient = srv.URL, srv.Client()
		})
		_, err := bare.Sync(ctx)
		var apiErr *connectors.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 401 {
			t.Fatalf("without the token: %v, want APIError 401", err)
		}
		failing, _, _ := newList(t, func(c *connectors.SuppressionConfig) {
			c.Authorize = func(*http.Request) error { return errors.New("no token") }
		})
		if _, err := failing.Sync(ctx); err == nil || !strings.Contains(err.Error(), "no token") {
			t.Errorf("Authorize failing: %v", err)
		}
	})
}

// TestReEraseCallsTheHandler checks that ReErase hands the handler the
// suppressed identifiers only, once per erasure request and as a command of
// that request with a fresh command id, retries its errors, and reports
// each outcome.
func TestReEraseCallsTheHandler(t *testing.T) {
	l, f, d := newList(t, func(c *connectors.SuppressionConfig) {
		c.Retry = connectors.RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond}
	})
	ctx := ctxT(t)
	r1, r2, r3 := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
	at := restoreTime.Add(time.Hour)
	f.add(
		erased(d, r2, "email", "bob@example.com", at.Add(time.Minute)),
		erased(d, r1, "email", "ada@example.com", at),
		erased(d, r1, "user_id", "u-1", at),
		erased(d, r3, "email", "ada@example.com", at.Add(time.Hour)), // erased again later
	)

	var (
		mu    sync.Mutex
		calls []connectors.Request
		fails = 2 // the first calls fail, transiently
	)
	h := connectors.HandlerFunc(func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, req)
		if fails > 0 {
			fails--
			return connectors.Result{}, errors.New("database restarting")
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: int64(len(req.Identifiers))}, nil
	})
	restored := ids("user_id", "u-1", "email", "carol@example.com", "email", "bob@example.com", "email", "ada@example.com")
	got, err := l.ReErase(ctx, "crm", h, restored)
	if err != nil {
		t.Fatalf("ReErase: %v", err)
	}
	want := []connectors.ReErasure{
		{RequestID: r1, Identifiers: ids("user_id", "u-1", "email", "ada@example.com"),
			Result: connectors.Result{Outcome: wire.OutcomeErased, Records: 2}},
		{RequestID: r2, Identifiers: ids("email", "bob@example.com"),
			Result: connectors.Result{Outcome: wire.OutcomeErased, Records: 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ReErase = %+v\nwant %+v", got, want)
	}
	if len(calls) != 4 {
		t.Fatalf("handler called %d times, want 4 (two failures retried, then one call per request)", len(calls))
	}
	commandIDs := map[string]bool{}
	for _, c := range calls {
		commandIDs[c.CommandID] = true
		if !wire.ValidID(c.CommandID) || c.System != "crm" || c.Attempt != 1 || c.DryRun || c.IssuedAt.IsZero() {
			t.Errorf("request %+v is not a well-formed command", c)
		}
		for _, id := range c.Identifiers {
			if id.Value == "carol@example.com" {
				t.Errorf("an identifier Lethe never erased reached the handler")
			}
		}
	}
	if len(commandIDs) != 2 || calls[0].CommandID != calls[2].CommandID || calls[2].RequestID != r1 || calls[3].RequestID != r2 {
		t.Errorf("command ids %v: want one per request, kept across retries", calls)
	}

	t.Run("a second restore gets new command ids", func(t *testing.T) {
		mu.Lock()
		calls = nil
		mu.Unlock()
		if _, err := l.ReErase(ctx, "crm", h, ids("email", "bob@example.com")); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || commandIDs[calls[0].CommandID] {
			t.Errorf("calls %v, want one with a command id never used", calls)
		}
	})
	t.Run("nothing suppressed, no call", func(t *testing.T) {
		mu.Lock()
		calls = nil
		mu.Unlock()
		got, err := l.ReErase(ctx, "crm", h, ids("email", "carol@example.com"))
		if err != nil || len(got) != 0 || len(calls) != 0 {
			t.Errorf("ReErase = %v, %v with %d calls; want nothing", got, err, len(calls))
		}
	})
	t.Run("errors are reported per request", func(t *testing.T) {
		failing := connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
			return connectors.Result{}, connectors.Permanent(errors.New("row locked by a legal hold"))
		})
		got, err := l.ReErase(ctx, "crm", failing, ids("email", "bob@example.com", "user_id", "u-1"))
		if err != nil || len(got) != 2 || got[0].Err == nil || got[1].Err == nil {
			t.Errorf("ReErase = %+v, %v; want both requests with the handler's error", got, err)
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		if _, err := l.ReErase(ctx, "Not A System", h, restored); err == nil {
			t.Errorf("a malformed system name was accepted")
		}
		if _, err := l.ReErase(ctx, "crm", nil, restored); err == nil {
			t.Errorf("a nil handler was accepted")
		}
	})
}

// TestSuppressionListConcurrentUse syncs and asks from many goroutines while
// Lethe's list grows; with -race it checks the list's locking, and at the
// end that nothing was lost or counted twice.
func TestSuppressionListConcurrentUse(t *testing.T) {
	l, f, d := newList(t, func(c *connectors.SuppressionConfig) {
		c.MaxAge = -1
		c.PageSize = 3
	})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				v := fmt.Sprintf("g%d-%d", g, i)
				f.add(erased(d, uuid.NewString(), "email", v, restoreTime))
				if i%2 == 0 {
					if _, err := l.Sync(ctx); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := l.Suppressed(ctx, ids("email", v)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 80 {
		t.Errorf("Len = %d, want 80", l.Len())
	}
}

func TestSuppressionConfigValidate(t *testing.T) {
	d := testDigester(t, subjectKey)
	ok := connectors.SuppressionConfig{URL: "https://lethe.internal", Digester: d}
	tests := []struct {
		name   string
		modify func(*connectors.SuppressionConfig)
		want   string
	}{
		{"valid", func(*connectors.SuppressionConfig) {}, ""},
		{"valid with a path", func(c *connectors.SuppressionConfig) { c.URL = "http://gw/lethe/" }, ""},
		{"no url", func(c *connectors.SuppressionConfig) { c.URL = "" }, "no URL"},
		{"not http", func(c *connectors.SuppressionConfig) { c.URL = "ftp://lethe" }, "not an http"},
		{"no host", func(c *connectors.SuppressionConfig) { c.URL = "http://" }, "not an http"},
		{"no digester", func(c *connectors.SuppressionConfig) { c.Digester = nil }, "no digester"},
		{"bad type", func(c *connectors.SuppressionConfig) { c.Types = []string{"E-mail"} }, "identifier type"},
		{"negative page", func(c *connectors.SuppressionConfig) { c.PageSize = -1 }, "page size"},
		{"negative retry", func(c *connectors.SuppressionConfig) { c.Retry.MaxAttempts = -1 }, "retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
			if _, nerr := connectors.NewSuppressionList(c); (nerr == nil) != (err == nil) {
				t.Errorf("NewSuppressionList = %v, Validate = %v", nerr, err)
			}
		})
	}
}
