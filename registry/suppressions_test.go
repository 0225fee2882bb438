package registry_test

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// finish runs a request to status at the given time, with the systems given.
func finish(t *testing.T, s *registry.Store, id string, status lethe.RequestStatus, at time.Time, systems ...lethe.SystemProgress) {
	t.Helper()
	d := lethe.LedgerDelta{Status: status, Systems: systems}
	if status.Final() {
		d.CompletedAt = &at
	}
	if err := s.ApplyLedger(testContext(t), id, d); err != nil {
		t.Fatalf("ApplyLedger(%s, %s): %v", id, status, err)
	}
}

func system(name string, st lethe.SystemStatus) lethe.SystemProgress {
	return lethe.SystemProgress{Name: name, Status: st}
}

// listAll pages through the list from f's cursor and returns every entry and
// the last cursor, checking each page's bounds and flags on the way.
func listAll(t *testing.T, s *registry.Store, f registry.SuppressionFilter) ([]lethe.Suppression, string) {
	t.Helper()
	var all []lethe.Suppression
	for range 1000 {
		page, err := s.ListSuppressions(testContext(t), f)
		if err != nil {
			t.Fatalf("ListSuppressions(%+v): %v", f, err)
		}
		if f.Limit > 0 && len(page.Items) > f.Limit {
			t.Fatalf("page of %d entries, limit %d", len(page.Items), f.Limit)
		}
		if page.More && len(page.Items) == 0 {
			t.Fatalf("an empty page says more follow")
		}
		all = append(all, page.Items...)
		f.Cursor = page.NextCursor
		if !page.More {
			return all, f.Cursor
		}
	}
	t.Fatalf("the list did not end after 1000 pages")
	return nil, ""
}

// entry names one listed identifier of a request.
type entry struct {
	request, idType, digest string
}

func entries(items []lethe.Suppression) []entry {
	out := make([]entry, len(items))
	for i, it := range items {
		out[i] = entry{it.RequestID, it.Type, it.Digest}
	}
	return out
}

func sortedEntries(items []lethe.Suppression) []entry {
	out := entries(items)
	slices.SortFunc(out, func(a, b entry) int {
		return strings.Compare(a.request+a.idType+a.digest, b.request+b.idType+b.digest)
	})
	return out
}

// TestListSuppressionsWhichRequestsCount finishes requests in every way a
// request can end and checks which are listed: completed and failed ones,
// canceled ones once a command may have erased something, never dry runs
// or unfinished ones; with every digest recorded for the request, those
// added after it was made included, and the time it finished.
func TestListSuppressionsWhichRequestsCount(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	at := t0.Add(time.Hour)

	type made struct {
		name   string
		counts bool
		id     string
	}
	var all []made
	add := func(name string, counts bool, dryRun bool, end func(id string)) {
		in := newErasure(t0,
			lethe.SubjectDigest{Type: "user_id", Digest: "u-" + name},
			lethe.SubjectDigest{Type: "email", Digest: "e-" + name})
		in.DryRun = dryRun
		create(t, s, in)
		end(in.ID)
		all = append(all, made{name, counts, in.ID})
	}
	ends := func(status lethe.RequestStatus, systems ...lethe.SystemProgress) func(string) {
		return func(id string) { finish(t, s, id, status, at, systems...) }
	}
	add("completed", true, false, ends(lethe.RequestCompleted, system("orders", lethe.SystemErased)))
	add("completed-nothing-found", true, false, ends(lethe.RequestCompleted, system("orders", lethe.SystemNotFound)))
	add("failed", true, false, ends(lethe.RequestFailed, system("orders", lethe.SystemFailed)))
	add("canceled-erased", true, false, ends(lethe.RequestCanceled,
		system("orders", lethe.SystemErased), system("crm", lethe.SystemPending)))
	add("canceled-dispatched", true, false, ends(lethe.RequestCanceled, system("orders", lethe.SystemDispatched)))
	add("canceled-failed", true, false, ends(lethe.RequestCanceled, system("orders", lethe.SystemFailed)))
	add("canceled-before-dispatch", false, false, ends(lethe.RequestCanceled, system("orders", lethe.SystemPending)))
	add("canceled-nothing-erased", false, false, ends(lethe.RequestCanceled,
		system("orders", lethe.SystemNotFound), system("billing", lethe.SystemRetained)))
	add("canceled-unplanned", false, false, ends(lethe.RequestCanceled))
	add("dry-run", false, true, ends(lethe.RequestCompleted, system("orders", lethe.SystemErased)))
	add("running", false, false, ends(lethe.RequestRunning, system("orders", lethe.SystemDispatched)))
	add("pending", false, false, func(string) {})

	// A digest recorded for the request after it was made, the way the
	// identifiers a system reveals are, is listed with the others.
	completed := all[0].id
	if _, err := s.DB().ExecContext(ctx,
		`INSERT INTO request_subjects (request_id, id_type, digest) VALUES ($1, 'device_id', 'd-derived')`,
		completed); err != nil {
		t.Fatalf("record a derived digest: %v", err)
	}
	testenv.SettleTransactions(t, s.DB())

	got, _ := listAll(t, s, registry.SuppressionFilter{})
	var want []entry
	for _, m := range all {
		if m.counts {
			want = append(want, entry{m.id, "email", "e-" + m.name}, entry{m.id, "user_id", "u-" + m.name})
		}
	}
	want = append(want, entry{completed, "device_id", "d-derived"})
	slices.SortFunc(want, func(a, b entry) int {
		return strings.Compare(a.request+a.idType+a.digest, b.request+b.idType+b.digest)
	})
	if g := sortedEntries(got); !reflect.DeepEqual(g, want) {
		names := map[string]string{}
		for _, m := range all {
			names[m.id] = m.name
		}
		describe := func(es []entry) string {
			var b strings.Builder
			for _, e := range es {
				fmt.Fprintf(&b, "\n  %s %s %s", names[e.request], e.idType, e.digest)
			}
			return b.String()
		}
		t.Errorf("listed:%s\nwant:%s", describe(g), describe(want))
	}
	for _, it := range got {
		if !it.ErasedAt.Equal(at) || it.ErasedAt.Location() != time.UTC {
			t.Errorf("%s erased_at = %v, want %v in UTC", it.RequestID, it.ErasedAt, at)
		}
	}
}

// TestListSuppressionsSinceAndType filters by the time requests finished,
// at or after since, and by identifier type.
func TestListSuppressionsSinceAndType(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var ids []string
	for i := range 3 {
		in := newErasure(t0,
			lethe.SubjectDigest{Type: "user_id", Digest: fmt.Sprintf("u%d", i)},
			lethe.SubjectDigest{Type: "email", Digest: fmt.Sprintf("e%d", i)})
		create(t, s, in)
		ids = append(ids, in.ID)
	}
	// Finished at 3h, 1h and 2h, in that order: the request that finished
	// earliest is recorded last.
	finish(t, s, ids[0], lethe.RequestCompleted, t0.Add(3*time.Hour))
	finish(t, s, ids[1], lethe.RequestCompleted, t0.Add(1*time.Hour))
	finish(t, s, ids[2], lethe.RequestFailed, t0.Add(2*time.Hour))
	testenv.SettleTransactions(t, s.DB())

	tests := []struct {
		name   string
		filter registry.SuppressionFilter
		want   []entry
	}{
		{"everything", registry.SuppressionFilter{}, []entry{
			{ids[0], "email", "e0"}, {ids[0], "user_id", "u0"},
			{ids[1], "email", "e1"}, {ids[1], "user_id", "u1"},
			{ids[2], "email", "e2"}, {ids[2], "user_id", "u2"},
		}},
		{"since an exact finish time includes it", registry.SuppressionFilter{Since: t0.Add(2 * time.Hour)}, []entry{
			{ids[0], "email", "e0"}, {ids[0], "user_id", "u0"},
			{ids[2], "email", "e2"}, {ids[2], "user_id", "u2"},
		}},
		{"since in another zone", registry.SuppressionFilter{Since: t0.Add(2*time.Hour + time.Second).In(time.FixedZone("CET", 3600))}, []entry{
			{ids[0], "email", "e0"}, {ids[0], "user_id", "u0"},
		}},
		{"since after everything", registry.SuppressionFilter{Since: t0.Add(4 * time.Hour)}, nil},
		{"type", registry.SuppressionFilter{Type: "user_id"}, []entry{
			{ids[0], "user_id", "u0"}, {ids[1], "user_id", "u1"}, {ids[2], "user_id", "u2"},
		}},
		{"type and since", registry.SuppressionFilter{Type: "email", Since: t0.Add(90 * time.Minute)}, []entry{
			{ids[0], "email", "e0"}, {ids[2], "email", "e2"},
		}},
		{"unknown type", registry.SuppressionFilter{Type: "phone"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := listAll(t, s, tt.filter)
			slices.SortFunc(tt.want, func(a, b entry) int {
				return strings.Compare(a.request+a.idType+a.digest, b.request+b.idType+b.digest)
			})
			if g := sortedEntries(got); !slices.Equal(g, tt.want) {
				t.Errorf("listed %v, want %v", g, tt.want)
			}
		})
	}
}

// TestListSuppressionsPaging pages through entries that share their finish
// time and their transaction, one entry or several at a time, and checks
// that the pages join without a gap or a repeat; then that the last cursor,
// used later, brings exactly what finished since, including a request that
// finished before entries already read but was recorded after them.
func TestListSuppressionsPaging(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	newRequest := func(n int) string {
		var subject []lethe.SubjectDigest
		for j := range n {
			subject = append(subject, lethe.SubjectDigest{Type: []string{"email", "user_id", "device_id"}[j%3], Digest: uuid.NewString()})
		}
		in := newErasure(t0, subject...)
		create(t, s, in)
		return in.ID
	}
	var ids []string
	for i := range 7 {
		ids = append(ids, newRequest(1+i%3))
	}
	// Four of them finish in one transaction, at one time: their entries
	// tie on both and are told apart by request, type and digest.
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE erasure_requests SET status = 'completed', completed_at = $2, updated_at = $2
		WHERE id = ANY ($1::uuid[])`, "{"+strings.Join(ids[:4], ",")+"}", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[4:] {
		finish(t, s, id, lethe.RequestCompleted, t0.Add(time.Hour))
	}
	testenv.SettleTransactions(t, s.DB())

	whole, cursor := listAll(t, s, registry.SuppressionFilter{Limit: registry.MaxSuppressionLimit})
	if len(whole) != 13 {
		t.Fatalf("listed %d entries, want 13", len(whole))
	}
	for _, it := range whole[:7] {
		if !slices.Contains(ids[:4], it.RequestID) {
			t.Fatalf("the requests finished together are not listed first: %v", entries(whole))
		}
	}
	if cursor == "" {
		t.Fatalf("no cursor after the last page")
	}
	for _, limit := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			got, _ := listAll(t, s, registry.SuppressionFilter{Limit: limit})
			if !reflect.DeepEqual(entries(got), entries(whole)) {
				t.Errorf("paged by %d:\n%v\nwant\n%v", limit, entries(got), entries(whole))
			}
		})
	}

	t.Run("more is false on a page that is exactly full", func(t *testing.T) {
		page, err := s.ListSuppressions(ctx, registry.SuppressionFilter{Limit: 13})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 13 || page.More || page.NextCursor != cursor {
			t.Errorf("page = %d entries, more %v, cursor %q; want 13, false, %q", len(page.Items), page.More, page.NextCursor, cursor)
		}
	})

	t.Run("the last cursor brings only what finished later", func(t *testing.T) {
		page, err := s.ListSuppressions(ctx, registry.SuppressionFilter{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 0 || page.More || page.NextCursor != cursor {
			t.Fatalf("nothing new: page = %v, more %v, cursor %q; want empty, false, the same cursor", page.Items, page.More, page.NextCursor)
		}
		late := newRequest(2)
		finish(t, s, late, lethe.RequestCompleted, t0.Add(time.Minute)) // earlier than everything read
		testenv.SettleTransactions(t, s.DB())
		got, next := listAll(t, s, registry.SuppressionFilter{Cursor: cursor})
		if len(got) != 2 || got[0].RequestID != late || got[1].RequestID != late {
			t.Fatalf("after the cursor: %v, want the two entries of %s", entries(got), late)
		}
		if next == cursor || next == "" {
			t.Errorf("the cursor did not move: %q", next)
		}
	})
}

// TestListSuppressionsWaitsForOpenTransactions shows why entries are ordered
// by transaction: a request finished in a transaction still open holds back
// the requests finished after it, so a client never skips past it.
func TestListSuppressionsWaitsForOpenTransactions(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	early := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "early"})
	later := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "later"})
	create(t, s, early)
	create(t, s, later)
	testenv.SettleTransactions(t, s.DB())
	_, start := listAll(t, s, registry.SuppressionFilter{})
	if start != "" {
		t.Fatalf("entries listed before anything finished")
	}

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE erasure_requests SET status = 'completed', completed_at = $2, updated_at = $2
		WHERE id = $1`, early.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	finish(t, s, later.ID, lethe.RequestCompleted, t0.Add(2*time.Hour))

	page, err := s.ListSuppressions(ctx, registry.SuppressionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 0 || page.NextCursor != "" {
		t.Fatalf("with an earlier transaction open, listed %v (cursor %q); want nothing yet", entries(page.Items), page.NextCursor)
	}

	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	testenv.SettleTransactions(t, s.DB())
	got, _ := listAll(t, s, registry.SuppressionFilter{})
	want := []entry{{early.ID, "user_id", "early"}, {later.ID, "user_id", "later"}}
	if !reflect.DeepEqual(entries(got), want) {
		t.Errorf("listed %v, want %v", entries(got), want)
	}
}

// TestListSuppressionsAfterMovingServers plays a database copied to another
// server, whose transaction ids are below the copied positions: Migrate
// moves the copied entries first again, new ones follow them, and a cursor
// of the old server is refused so its client starts again.
func TestListSuppressionsAfterMovingServers(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	old := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "old"})
	create(t, s, old)
	finish(t, s, old.ID, lethe.RequestCompleted, t0.Add(time.Hour))
	testenv.SettleTransactions(t, s.DB())

	// The copied rows carry the old server's transaction ids, far ahead of
	// this one's; so does a cursor a client kept from it.
	const oldServerXID = 1 << 50
	if _, err := s.DB().ExecContext(ctx,
		`UPDATE erasure_requests SET finished_xid = $1::text::xid8 WHERE id = $2`,
		strconv.FormatUint(oldServerXID, 10), old.ID); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListSuppressions(ctx, registry.SuppressionFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("a position in the future is listed: %v, %v", page.Items, err)
	}

	if err := registry.Migrate(ctx, s.DB()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	page, err = s.ListSuppressions(ctx, registry.SuppressionFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].RequestID != old.ID {
		t.Fatalf("after Migrate: %v, %v; want the copied entry", page.Items, err)
	}
	kept := page.NextCursor

	newer := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "newer"})
	create(t, s, newer)
	finish(t, s, newer.ID, lethe.RequestCompleted, t0.Add(2*time.Hour))
	testenv.SettleTransactions(t, s.DB())
	got, _ := listAll(t, s, registry.SuppressionFilter{Cursor: kept})
	if len(got) != 1 || got[0].RequestID != newer.ID {
		t.Errorf("after the copied entry: %v, want the new one", entries(got))
	}

	// A cursor a client kept from the old server points past every
	// transaction of this one.
	future := registry.SuppressionCursor(oldServerXID, old.ID, "user_id", "old")
	_, err = s.ListSuppressions(ctx, registry.SuppressionFilter{Cursor: future})
	wantCode(t, err, lethe.KindInvalid, "cursor_expired")
}

// TestListSuppressionsRejects checks the filter's validation.
func TestListSuppressionsRejects(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	tests := []struct {
		name   string
		filter registry.SuppressionFilter
		code   string
	}{
		{"type with a dash", registry.SuppressionFilter{Type: "user-id"}, "invalid_type"},
		{"type upper case", registry.SuppressionFilter{Type: "Email"}, "invalid_type"},
		{"cursor not base64", registry.SuppressionFilter{Cursor: "!!"}, "invalid_cursor"},
		{"cursor too short", registry.SuppressionFilter{Cursor: "AAAA"}, "invalid_cursor"},
		{"erasures cursor", registry.SuppressionFilter{Cursor: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "invalid_cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ListSuppressions(ctx, tt.filter)
			wantCode(t, err, lethe.KindInvalid, tt.code)
		})
	}
}
