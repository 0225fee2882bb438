package registry_test

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// fillAudit writes a varied history through every path that appends to the
// audit (request creation, ledger deltas, the relay's stray events, legal
// hold events without a request), with and without actors, and returns the
// ids of the requests.
func fillAudit(t *testing.T, s *registry.Store) []string {
	t.Helper()
	ctx := testContext(t)
	var ids []string
	for i := range 3 {
		in := newErasure(t0.Add(time.Duration(i) * time.Minute))
		in.CreatedBy = fmt.Sprintf("token:svc-%d ✓", i)
		create(t, s, in)
		ids = append(ids, in.ID)
		if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{
			Status:  lethe.RequestRunning,
			Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemDispatched, Attempts: 1}},
			Events: []lethe.AuditEvent{
				{Kind: lethe.AuditPlanned, Detail: "1 system"},
				// Nanoseconds PostgreSQL rounds away, and text beyond ASCII.
				{Kind: lethe.AuditDispatched, System: "orders", Attempt: 1, Detail: "café ✓ 数据",
					At: t0.Add(time.Duration(i)*time.Minute + 123456789*time.Nanosecond)},
			},
			Batch: "wave-1",
		}); err != nil {
			t.Fatalf("ApplyLedger: %v", err)
		}
	}
	if err := s.AppendAudit(ctx, []lethe.AuditEvent{
		{RequestID: uuid.NewString(), System: "ghost", Kind: lethe.AuditConfirmationRejected, Detail: "unknown command"},
		{Hold: "hold-7", Kind: lethe.AuditHoldPlaced, Detail: "litigation"},
		{RequestID: ids[0], Hold: "hold-7", Kind: lethe.AuditHeld},
		{RequestID: ids[2], Kind: lethe.AuditCancelRequested, Actor: "alice@example.org"},
	}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	return ids
}

func countAudit(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(testContext(t), `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func verifyIntact(t *testing.T, s *registry.Store) registry.AuditVerification {
	t.Helper()
	v, err := s.VerifyAudit(testContext(t))
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if !v.Intact() {
		t.Fatalf("VerifyAudit found a break in an untouched chain: %+v", *v.Broken)
	}
	return v
}

func TestAuditChainIntact(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	empty := verifyIntact(t, s)
	if empty.Checked != 0 || empty.Head.Seq != 0 {
		t.Errorf("empty chain: %+v, want nothing checked and head seq 0", empty)
	}

	ids := fillAudit(t, s)
	v := verifyIntact(t, s)
	rows := countAudit(t, s.DB())
	if v.Checked != rows || v.Head.Seq != rows {
		t.Errorf("checked %d rows, head seq %d; the audit has %d rows", v.Checked, v.Head.Seq, rows)
	}
	head, err := s.AuditHead(ctx)
	if err != nil || head != v.Head {
		t.Errorf("AuditHead = %+v, %v; want %+v", head, err, v.Head)
	}

	// The request's last link is its last event: the held event of ids[0].
	var wantSeq int64
	var wantHash string
	if err := s.DB().QueryRowContext(ctx, `SELECT seq, hash FROM audit_events
		WHERE request_id = $1 AND kind = 'held'`, ids[0]).Scan(&wantSeq, &wantHash); err != nil {
		t.Fatal(err)
	}
	last, err := s.RequestAuditHead(ctx, ids[0])
	if err != nil || last.Seq != wantSeq || last.Hash != wantHash {
		t.Errorf("RequestAuditHead = %+v, %v; want seq %d hash %s", last, err, wantSeq, wantHash)
	}
	if none, err := s.RequestAuditHead(ctx, uuid.NewString()); err != nil || none.Seq != 0 {
		t.Errorf("RequestAuditHead of an unknown request = %+v, %v; want zero", none, err)
	}

	// Events of a hold keep their hold and have no request.
	var nullRequests int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM audit_events
		WHERE request_id IS NULL AND hold_id = 'hold-7' AND kind = 'hold_placed'`).Scan(&nullRequests); err != nil || nullRequests != 1 {
		t.Errorf("hold event without request: %d rows, %v; want 1", nullRequests, err)
	}
	events, err := s.Audit(ctx, ids[0])
	if err != nil || events[len(events)-1].Hold != "hold-7" {
		t.Errorf("Audit(%s) = %+v, %v; want the held event with its hold last", ids[0], events, err)
	}
}

func TestAppendAuditNeedsRequestOrHold(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	err := s.AppendAudit(testContext(t), []lethe.AuditEvent{{Kind: lethe.AuditHeld}})
	wantCode(t, err, lethe.KindInvalid, "invalid_request_id")
}

// tamper runs stmt as the superuser would, with the append-only trigger
// switched off around it.
func tamper(t *testing.T, db *sql.DB, stmt string, args ...any) {
	t.Helper()
	ctx := testContext(t)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, q := range []string{
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete`,
		stmt,
		`ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete`,
	} {
		a := args
		if q != stmt {
			a = nil
		}
		res, err := tx.ExecContext(ctx, q, a...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if q == stmt {
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%s changed %d rows, want 1", q, n)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// rowAt returns the id and seq of the n-th row of the chain.
func rowAt(t *testing.T, db *sql.DB, n int) (id, seq int64) {
	t.Helper()
	if err := db.QueryRowContext(testContext(t),
		`SELECT id, seq FROM audit_events ORDER BY seq OFFSET $1 LIMIT 1`, n-1).Scan(&id, &seq); err != nil {
		t.Fatal(err)
	}
	return id, seq
}

func TestVerifyAuditFindsTampering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// change tampers with the row of the given id and returns the seq
		// VerifyAudit must name, the id it must name (0 for a missing row)
		// and the problem.
		change func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem)
	}{
		{"edited detail", func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem) {
			tamper(t, db, `UPDATE audit_events SET detail = 'nothing happened here' WHERE id = $1`, id)
			return seq, id, registry.AuditHashMismatch
		}},
		{"edited time by one microsecond", func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem) {
			tamper(t, db, `UPDATE audit_events SET at = at + interval '1 microsecond' WHERE id = $1`, id)
			return seq, id, registry.AuditHashMismatch
		}},
		{"request id set to NULL", func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem) {
			tamper(t, db, `UPDATE audit_events SET request_id = NULL WHERE id = $1`, id)
			return seq, id, registry.AuditHashMismatch
		}},
		{"deleted row", func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem) {
			tamper(t, db, `DELETE FROM audit_events WHERE id = $1`, id)
			return seq, 0, registry.AuditMissingRow
		}},
		{"edited row with its hash recomputed", func(t *testing.T, db *sql.DB, id, seq int64) (int64, int64, registry.AuditProblem) {
			// Whoever knows the encoding can fix the row's own hash, but
			// the next row still points at the old one.
			tamper(t, db, `UPDATE audit_events SET detail = 'forged',
				hash = audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, 'forged', at, prev_hash, actor)
				WHERE id = $1`, id)
			nextID, nextSeq := rowAt(t, db, int(seq)+1)
			return nextSeq, nextID, registry.AuditPrevHashMismatch
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			fillAudit(t, s)
			verifyIntact(t, s)
			id, seq := rowAt(t, s.DB(), 5)
			wantSeq, wantID, problem := tc.change(t, s.DB(), id, seq)

			v, err := s.VerifyAudit(testContext(t))
			if err != nil {
				t.Fatalf("VerifyAudit: %v", err)
			}
			if v.Intact() {
				t.Fatalf("VerifyAudit found the tampered chain intact: %+v", v)
			}
			b := *v.Broken
			if b.Seq != wantSeq || b.ID != wantID || b.Problem != problem {
				t.Errorf("broken link = seq %d id %d %s (%s); want seq %d id %d %s",
					b.Seq, b.ID, b.Problem, b.Message, wantSeq, wantID, problem)
			}
			if v.Checked != wantSeq-1 {
				t.Errorf("checked %d rows before the break, want %d", v.Checked, wantSeq-1)
			}
		})
	}
}

func TestVerifyAuditFindsDeletedLastRow(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	fillAudit(t, s)
	head := verifyIntact(t, s).Head
	tamper(t, s.DB(), `DELETE FROM audit_events WHERE seq = $1`, head.Seq)
	v, err := s.VerifyAudit(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Intact() || v.Broken.Seq != head.Seq || v.Broken.Problem != registry.AuditMissingRow {
		t.Errorf("VerifyAudit = %+v, want row seq %d missing", v.Broken, head.Seq)
	}
}

// TestAuditInsertCannotChooseItsLink: whoever inserts a row directly gets
// the next link of the chain, whatever seq and hashes it names.
func TestAuditInsertCannotChooseItsLink(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	fillAudit(t, s)
	ctx := testContext(t)
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO audit_events (request_id, kind, at, seq, prev_hash, hash)
		VALUES ($1, 'received', now(), 1, 'forged', 'forged')`, uuid.NewString()); err != nil {
		t.Fatalf("plain insert: %v", err)
	}
	if v := verifyIntact(t, s); v.Checked != countAudit(t, s.DB()) {
		t.Errorf("checked %d rows, the audit has %d", v.Checked, countAudit(t, s.DB()))
	}
}

// TestAuditChainConcurrentWriters appends from many transactions at once,
// through every path, and checks the chain did not fork: one row per
// sequence number, each pointing at the one before.
func TestAuditChainConcurrentWriters(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	const writers, rounds = 8, 10
	ids := make([]string, writers)
	for i := range ids {
		in := newErasure(t0)
		create(t, s, in)
		ids[i] = in.ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				if err := s.AppendAudit(ctx, []lethe.AuditEvent{
					{RequestID: ids[w], Kind: lethe.AuditConfirmationLate, Detail: fmt.Sprintf("w%d r%d a", w, r)},
					{RequestID: ids[w], Kind: lethe.AuditConfirmationLate, Detail: fmt.Sprintf("w%d r%d b", w, r)},
				}); err != nil {
					errs <- err
				}
				if err := s.ApplyLedger(ctx, ids[w], lethe.LedgerDelta{Events: []lethe.AuditEvent{
					{Kind: lethe.AuditConfirmed, Detail: fmt.Sprintf("w%d r%d", w, r)},
				}}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	v := verifyIntact(t, s)
	want := int64(writers + writers*rounds*3)
	if v.Checked != want || countAudit(t, s.DB()) != want {
		t.Errorf("checked %d rows, want %d", v.Checked, want)
	}
}

// TestAuditChainBackfill upgrades a database that release 0002 left with
// history in it: the migration chains the old rows in id order, and the
// chain goes on from there.
func TestAuditChainBackfill(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := registry.MigrateTo(ctx, db, 2); err != nil {
		t.Fatalf("migrate to 0002: %v", err)
	}
	const old = 25
	for i := range old {
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_events (request_id, system, kind, attempt, detail, at)
			VALUES ($1, $2, 'dispatched', $3, $4, $5)`,
			uuid.NewString(), fmt.Sprintf("sys-%d", i%4), i%3, fmt.Sprintf("old row %d ✓", i),
			t0.Add(time.Duration(i)*time.Second+time.Duration(i)*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := registry.Migrate(ctx, db); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	s := registry.New(db)
	v := verifyIntact(t, s)
	if v.Checked != old || v.Head.Seq != old {
		t.Errorf("after the upgrade: %+v, want %d rows chained", v, old)
	}
	var firstID, firstSeq int64
	if err := db.QueryRowContext(ctx, `SELECT id, seq FROM audit_events ORDER BY id LIMIT 1`).Scan(&firstID, &firstSeq); err != nil || firstSeq != 1 {
		t.Errorf("the oldest row has seq %d (%v), want 1", firstSeq, err)
	}
	fillAudit(t, s)
	if v := verifyIntact(t, s); v.Checked != countAudit(t, db) {
		t.Errorf("checked %d rows after new writes, the audit has %d", v.Checked, countAudit(t, db))
	}
}
