package registry_test

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// batchEntries are the entries a finished batch lists for the given items:
// each of their digests, once.
func batchEntries(in registry.NewBatch, items ...int) []entry {
	var out []entry
	for _, i := range items {
		for _, d := range in.Subjects[i].Digests {
			out = append(out, entry{in.ID, d.Type, d.Digest})
		}
	}
	return out
}

// requestEntries are the entries of a finished request.
func requestEntries(in registry.NewErasure) []entry {
	var out []entry
	for _, d := range in.Subject {
		out = append(out, entry{in.ID, d.Type, d.Digest})
	}
	return out
}

// inListOrder sorts the entries of one position (one transaction) as the
// list does: by id, type and digest.
func inListOrder(es []entry) []entry {
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(strings.Compare(a.request, b.request), strings.Compare(a.idType, b.idType), strings.Compare(a.digest, b.digest))
	})
	return es
}

// TestListSuppressionsListsBatchSubjects finishes a batch whose subjects
// ended in every way and checks which are listed: by the rule of requests,
// those completed or failed, and the others once a command may have erased
// something of them; never a dry run's, never those of a batch still open.
func TestListSuppressionsListsBatchSubjects(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	at := t0.Add(time.Hour)

	in := newBatch(t0, "which", 8)
	createBatch(t, s, in)
	setSubjects(t, s, in.ID, lethe.RequestCompleted, 0, 6)
	setSubjects(t, s, in.ID, lethe.RequestFailed, 1)
	setSubjects(t, s, in.ID, lethe.RequestCanceled, 2, 3, 7)
	setSubjects(t, s, in.ID, lethe.RequestRunning, 5)
	addOutcome(t, s, in.ID, 0, "orders", lethe.SystemErased, 1)
	addOutcome(t, s, in.ID, 1, "orders", lethe.SystemFailed, 0)
	addOutcome(t, s, in.ID, 2, "orders", lethe.SystemDispatched, 0) // may have been carried out
	addOutcome(t, s, in.ID, 3, "orders", lethe.SystemNotFound, 0)   // erased nothing
	addOutcome(t, s, in.ID, 3, "crm", lethe.SystemPending, 0)
	addOutcome(t, s, in.ID, 5, "orders", lethe.SystemErased, 4)
	addOutcome(t, s, in.ID, 7, "orders", lethe.SystemFailed, 0)
	// Subject 6 revealed an identifier subject 0 has: listed once.
	exec(t, s, `INSERT INTO batch_subject_digests (batch_id, item, id_type, digest, derived) VALUES ($1, 6, 'email', $2, true)`,
		in.ID, in.Subjects[0].Digests[0].Digest)
	// ...and one of its own, listed too.
	exec(t, s, `INSERT INTO batch_subject_digests (batch_id, item, id_type, digest, derived) VALUES ($1, 6, 'device_id', 'd-revealed', true)`, in.ID)
	finishBatch(t, s, in.ID, lethe.RequestCanceled, at)

	dry := newBatch(t0, "which-dry", 2)
	dry.DryRun = true
	createBatch(t, s, dry)
	setSubjects(t, s, dry.ID, lethe.RequestCompleted, 0, 1)
	finishBatch(t, s, dry.ID, lethe.RequestCompleted, at)

	open := newBatch(t0, "which-open", 2)
	createBatch(t, s, open)
	setSubjects(t, s, open.ID, lethe.RequestCompleted, 0)
	addOutcome(t, s, open.ID, 0, "orders", lethe.SystemErased, 1)

	req := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "u-request"})
	create(t, s, req)
	finish(t, s, req.ID, lethe.RequestCompleted, at)
	testenv.SettleTransactions(t, s.DB())

	got, _ := listAll(t, s, registry.SuppressionFilter{Limit: 3})
	want := append(batchEntries(in, 0, 1, 2, 5, 6, 7), entry{in.ID, "device_id", "d-revealed"}, entry{req.ID, "user_id", "u-request"})
	slices.SortFunc(want, func(a, b entry) int {
		return strings.Compare(a.request+a.idType+a.digest, b.request+b.idType+b.digest)
	})
	if g := sortedEntries(got); !reflect.DeepEqual(g, want) {
		t.Errorf("listed %d entries:\n%v\nwant %d:\n%v", len(g), g, len(want), want)
	}
	for _, it := range got {
		if !it.ErasedAt.Equal(at) || it.ErasedAt.Location() != time.UTC {
			t.Errorf("%s erased_at = %v, want %v in UTC", it.RequestID, it.ErasedAt, at)
		}
	}
}

// TestListSuppressionsPagesThroughBatchesAndRequests finishes requests and
// batches in turn, two of them in one transaction, and checks that the
// list orders them all by position, pages join without a gap or a repeat
// whatever their size, and a cursor kept brings exactly what finished
// later: a batch recorded late, and a batch retried and finished again.
func TestListSuppressionsPagesThroughBatchesAndRequests(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	newRequest := func(tag string) registry.NewErasure {
		in := newErasure(t0,
			lethe.SubjectDigest{Type: "email", Digest: batchDigest(tag, 0, "email")},
			lethe.SubjectDigest{Type: "user_id", Digest: batchDigest(tag, 0, "user_id")})
		create(t, s, in)
		return in
	}
	newFinishedSubjects := func(tag string) registry.NewBatch {
		in := newBatch(t0, tag, 3)
		createBatch(t, s, in)
		setSubjects(t, s, in.ID, lethe.RequestCompleted, 1, 2)
		setSubjects(t, s, in.ID, lethe.RequestFailed, 0)
		addOutcome(t, s, in.ID, 0, "orders", lethe.SystemFailed, 0)
		return in
	}
	r1, r2, r3 := newRequest("r1"), newRequest("r2"), newRequest("r3")
	b1, b2, b3 := newFinishedSubjects("b1"), newFinishedSubjects("b2"), newFinishedSubjects("b3")

	finish(t, s, r1.ID, lethe.RequestCompleted, t0.Add(1*time.Hour))
	finishBatch(t, s, b1.ID, lethe.RequestFailed, t0.Add(2*time.Hour))
	// A request and a batch finish in one transaction: one position.
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ query, id string }{
		{`UPDATE erasure_requests SET status = 'completed', completed_at = $2, updated_at = $2 WHERE id = $1`, r2.ID},
		{`UPDATE erasure_batches SET status = 'failed', completed_at = $2, updated_at = $2 WHERE id = $1`, b2.ID},
	} {
		if _, err := tx.ExecContext(ctx, q.query, q.id, t0.Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	finishBatch(t, s, b3.ID, lethe.RequestFailed, t0.Add(4*time.Hour))
	finish(t, s, r3.ID, lethe.RequestCompleted, t0.Add(5*time.Hour))
	testenv.SettleTransactions(t, s.DB())

	all := batchEntries(b1, 0, 1, 2)
	want := slices.Concat(inListOrder(requestEntries(r1)), inListOrder(all),
		inListOrder(append(requestEntries(r2), batchEntries(b2, 0, 1, 2)...)),
		inListOrder(batchEntries(b3, 0, 1, 2)), inListOrder(requestEntries(r3)))
	whole, cursor := listAll(t, s, registry.SuppressionFilter{Limit: registry.MaxSuppressionLimit})
	if !reflect.DeepEqual(entries(whole), want) {
		t.Fatalf("listed:\n%v\nwant, in order:\n%v", entries(whole), want)
	}
	for _, limit := range []int{1, 2, 3, 5, 7} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			got, _ := listAll(t, s, registry.SuppressionFilter{Limit: limit})
			if !reflect.DeepEqual(entries(got), want) {
				t.Errorf("paged by %d:\n%v\nwant\n%v", limit, entries(got), want)
			}
		})
	}

	t.Run("type", func(t *testing.T) {
		got, _ := listAll(t, s, registry.SuppressionFilter{Type: "user_id", Limit: 2})
		var wantTyped []entry
		for _, e := range want {
			if e.idType == "user_id" {
				wantTyped = append(wantTyped, e)
			}
		}
		if !reflect.DeepEqual(entries(got), wantTyped) {
			t.Errorf("user_id entries:\n%v\nwant\n%v", entries(got), wantTyped)
		}
	})
	t.Run("since", func(t *testing.T) {
		got, _ := listAll(t, s, registry.SuppressionFilter{Since: t0.Add(3 * time.Hour), Limit: 4})
		if !reflect.DeepEqual(entries(got), want[8:]) {
			t.Errorf("since the third position:\n%v\nwant\n%v", entries(got), want[8:])
		}
	})

	t.Run("a batch recorded late comes after the cursor", func(t *testing.T) {
		late := newFinishedSubjects("late")
		finishBatch(t, s, late.ID, lethe.RequestCompleted, t0.Add(time.Minute)) // earlier than everything read
		testenv.SettleTransactions(t, s.DB())
		got, next := listAll(t, s, registry.SuppressionFilter{Cursor: cursor, Limit: 4})
		if w := inListOrder(batchEntries(late, 0, 1, 2)); !reflect.DeepEqual(entries(got), w) {
			t.Errorf("after the cursor:\n%v\nwant the late batch's\n%v", entries(got), w)
		}
		cursor = next
	})

	t.Run("a retried batch leaves the list and comes back at its end", func(t *testing.T) {
		if _, err := s.RetryBatch(ctx, b1.ID, "oidc:admin", nil, nil); err != nil {
			t.Fatal(err)
		}
		testenv.SettleTransactions(t, s.DB())
		got, _ := listAll(t, s, registry.SuppressionFilter{})
		for _, it := range got {
			if it.RequestID == b1.ID {
				t.Fatalf("the reopened batch is still listed")
			}
		}
		setSubjects(t, s, b1.ID, lethe.RequestCompleted, 0)
		finishBatch(t, s, b1.ID, lethe.RequestCompleted, t0.Add(6*time.Hour))
		testenv.SettleTransactions(t, s.DB())
		got, _ = listAll(t, s, registry.SuppressionFilter{Cursor: cursor})
		if !reflect.DeepEqual(entries(got), inListOrder(all)) {
			t.Errorf("after the cursor:\n%v\nwant the batch finished again\n%v", entries(got), inListOrder(all))
		}
	})
}

// TestListSuppressionsWaitsForAnOpenBatchTransaction: a batch finished in
// a transaction still open holds back what finished after it.
func TestListSuppressionsWaitsForAnOpenBatchTransaction(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	early := newBatch(t0, "early", 1)
	createBatch(t, s, early)
	setSubjects(t, s, early.ID, lethe.RequestCompleted, 0)
	later := newErasure(t0, lethe.SubjectDigest{Type: "user_id", Digest: "later"})
	create(t, s, later)
	testenv.SettleTransactions(t, s.DB())

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE erasure_batches SET status = 'completed', completed_at = $2, updated_at = $2
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
	want := append(inListOrder(batchEntries(early, 0)), entry{later.ID, "user_id", "later"})
	if !reflect.DeepEqual(entries(got), want) {
		t.Errorf("listed %v, want %v", entries(got), want)
	}
}

// TestListSuppressionsAfterMovingServersWithBatches: Migrate moves copied
// batch positions from the old server's future first, as it does requests'.
func TestListSuppressionsAfterMovingServersWithBatches(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	old := newBatch(t0, "copied", 1)
	createBatch(t, s, old)
	setSubjects(t, s, old.ID, lethe.RequestCompleted, 0)
	finishBatch(t, s, old.ID, lethe.RequestCompleted, t0.Add(time.Hour))
	testenv.SettleTransactions(t, s.DB())
	exec(t, s, `UPDATE erasure_batches SET finished_xid = $1::text::xid8 WHERE id = $2`, strconv.FormatUint(1<<50, 10), old.ID)
	if page, err := s.ListSuppressions(ctx, registry.SuppressionFilter{}); err != nil || len(page.Items) != 0 {
		t.Fatalf("a position in the future is listed: %v, %v", page.Items, err)
	}
	if err := registry.Migrate(ctx, s.DB()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	got, _ := listAll(t, s, registry.SuppressionFilter{})
	if w := inListOrder(batchEntries(old, 0)); !reflect.DeepEqual(entries(got), w) {
		t.Errorf("after Migrate: %v, want %v", entries(got), w)
	}
}
