package registry_test

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// eventRow returns the id and seq of the request's one audit event of kind.
func eventRow(t *testing.T, db *sql.DB, requestID string, kind lethe.AuditKind) (id, seq int64) {
	t.Helper()
	if err := db.QueryRowContext(testContext(t),
		`SELECT id, seq FROM audit_events WHERE request_id = $1 AND kind = $2`, requestID, kind).Scan(&id, &seq); err != nil {
		t.Fatal(err)
	}
	return id, seq
}

// TestVerifyAuditFindsActorTampering: the chain covers the actor, whichever
// way it is edited, on rows written with an actor and on rows without one.
func TestVerifyAuditFindsActorTampering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// kind picks the row of the second request to tamper with: its
		// received event has an actor, its planned event none.
		kind lethe.AuditKind
		stmt string
		// next is true when the break shows at the following row.
		next bool
	}{
		{"actor blanked", lethe.AuditReceived, `UPDATE audit_events SET actor = '' WHERE id = $1`, false},
		{"actor renamed", lethe.AuditReceived, `UPDATE audit_events SET actor = 'token:svc-0 ✓' WHERE id = $1`, false},
		{"actor named where there was none", lethe.AuditPlanned, `UPDATE audit_events SET actor = 'token:svc-1 ✓' WHERE id = $1`, false},
		{"actor blanked with its hash recomputed", lethe.AuditReceived, `UPDATE audit_events SET actor = '',
			hash = audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash, '')
			WHERE id = $1`, true},
		{"actor renamed with its hash recomputed", lethe.AuditReceived, `UPDATE audit_events SET actor = 'mallory',
			hash = audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash, 'mallory')
			WHERE id = $1`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			ids := fillAudit(t, s)
			verifyIntact(t, s)
			id, seq := eventRow(t, s.DB(), ids[1], tc.kind)
			tamper(t, s.DB(), tc.stmt, id)
			wantSeq, wantID, problem := seq, id, registry.AuditHashMismatch
			if tc.next {
				wantID, wantSeq = rowAt(t, s.DB(), int(seq)+1)
				problem = registry.AuditPrevHashMismatch
			}
			v, err := s.VerifyAudit(testContext(t))
			if err != nil {
				t.Fatalf("VerifyAudit: %v", err)
			}
			if v.Intact() {
				t.Fatalf("VerifyAudit found the tampered chain intact: %+v", v)
			}
			if b := *v.Broken; b.Seq != wantSeq || b.ID != wantID || b.Problem != problem {
				t.Errorf("broken link = seq %d id %d %s (%s); want seq %d id %d %s",
					b.Seq, b.ID, b.Problem, b.Message, wantSeq, wantID, problem)
			}
		})
	}
}

// TestAuditActorHashVersions: the trigger and the Go verifier agree on both
// encodings, which differ by more than the actor: a row with an actor does
// not hash like the same row without one.
func TestAuditActorHashVersions(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ids := fillAudit(t, s)
	v := verifyIntact(t, s)
	var withActor, without int64
	if err := s.DB().QueryRowContext(testContext(t), `
		SELECT count(*) FILTER (WHERE actor <> ''), count(*) FILTER (WHERE actor = '') FROM audit_events`,
	).Scan(&withActor, &without); err != nil {
		t.Fatal(err)
	}
	if withActor < 4 || without < 4 || v.Checked != withActor+without {
		t.Fatalf("the chain mixes %d rows with an actor and %d without, %d checked; want several of each, all checked",
			withActor, without, v.Checked)
	}
	var v1, v2 string
	if err := s.DB().QueryRowContext(testContext(t), `
		SELECT audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash),
			audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash, actor)
		FROM audit_events WHERE request_id = $1 AND kind = 'received'`, ids[0]).Scan(&v1, &v2); err != nil {
		t.Fatal(err)
	}
	if v1 == v2 {
		t.Errorf("a row with an actor hashes as if it had none: %s", v1)
	}
}

// TestAuditActorMigration upgrades a database that the release before 0008
// left with a chained audit, a hold and a request: the rows already written
// keep their hashes and verify, their actors are empty, and the chain goes
// on with rows that name actors.
func TestAuditActorMigration(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := registry.MigrateTo(ctx, db, 7); err != nil {
		t.Fatalf("migrate to 0007: %v", err)
	}
	const old = 20
	for i := range old {
		reqID := sql.NullString{String: uuid.NewString(), Valid: i%5 != 0}
		hold := ""
		if !reqID.Valid {
			hold = fmt.Sprintf("hold-%d", i)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_events (request_id, hold_id, system, kind, attempt, detail, at)
			VALUES ($1, $2, $3, 'dispatched', $4, $5, $6)`,
			reqID, hold, fmt.Sprintf("sys-%d", i%4), i%3, fmt.Sprintf("old row %d ✓", i),
			t0.Add(time.Duration(i)*time.Second+time.Duration(i)*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO legal_holds (id, basis, created_at, updated_at, lifted_at)
		VALUES ('old-hold', 'Art. 17(3)(b)', $1, $1, $1)`, t0); err != nil {
		t.Fatal(err)
	}
	hashes := func() []string {
		var hs []string
		if err := db.QueryRowContext(ctx, `SELECT array_agg(hash ORDER BY seq) FROM audit_events`).Scan(pq.Array(&hs)); err != nil {
			t.Fatal(err)
		}
		return hs
	}
	before := hashes()

	if err := registry.Migrate(ctx, db); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	s := registry.New(db)
	if v := verifyIntact(t, s); v.Checked != old || v.Head.Seq != old || v.Head.Hash != before[old-1] {
		t.Errorf("after the upgrade: %+v, want the %d old rows intact under their old head", v, old)
	}
	after := hashes()
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("row seq %d changed hash in the upgrade: %s, was %s", i+1, after[i], before[i])
		}
	}
	var actors int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE actor <> ''`).Scan(&actors); err != nil || actors != 0 {
		t.Errorf("%d old rows have an actor (%v), want none", actors, err)
	}
	h, err := s.GetHold(ctx, "old-hold")
	if err != nil || h.PlacedBy != "" || h.LiftedBy != "" {
		t.Errorf("old hold = %+v, %v; want no actors", h, err)
	}

	fillAudit(t, s)
	if _, _, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"user_id"}}, ops); err != nil {
		t.Fatal(err)
	}
	if v := verifyIntact(t, s); v.Checked != countAudit(t, db) {
		t.Errorf("checked %d rows after new writes, the audit has %d", v.Checked, countAudit(t, db))
	}
}
