package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// runCommand runs lethe with args and env and returns its output and error.
func runCommand(t *testing.T, env map[string]string, args ...string) (stdout string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans several lines: %q", err)
	}
	return out.String(), err
}

// auditTamper runs stmt with the audit's append-only trigger switched off,
// as a superuser who wanted to rewrite history would.
func auditTamper(t *testing.T, db *sql.DB, stmt string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete`); err != nil {
		t.Fatal(err)
	}
	if res, err := tx.ExecContext(ctx, stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s changed %d rows, want 1", stmt, n)
	}
	if _, err := tx.ExecContext(ctx, `ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyCommand runs `lethe audit verify` on an untouched audit,
// then after a row was edited, after the actor of an earlier one was
// blanked and after another was deleted, and checks that it names exactly
// the broken row each time.
func TestAuditVerifyCommand(t *testing.T) {
	db, dbURL := testenv.Postgres(t)
	env := map[string]string{"LETHE_DATABASE_URL": dbURL}
	store := registry.New(db)
	ctx := context.Background()
	var certified string
	for i := range 3 {
		id := uuid.NewString()
		if _, _, err := store.CreateErasure(ctx, registry.NewErasure{
			ID: id, Subject: []lethe.SubjectDigest{{Type: "user_id", Digest: fmt.Sprint(i)}},
			CreatedBy: fmt.Sprintf("token:svc-%d", i),
		}, nil); err != nil {
			t.Fatal(err)
		}
		d := lethe.LedgerDelta{Events: []lethe.AuditEvent{
			{Kind: lethe.AuditPlanned}, {Kind: lethe.AuditDispatched, System: "orders", Attempt: 1},
		}}
		if i == 1 {
			d.Status = lethe.RequestCompleted
			certified = id
		}
		if err := store.ApplyLedger(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	signer, err := certificate.NewSigner(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := (&certificate.Issuer{Store: store, Signer: signer}).Certificate(ctx, certified)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, forgedPath := filepath.Join(dir, "cert.json"), filepath.Join(dir, "forged.json")
	os.WriteFile(certPath, doc, 0o600)
	var c certificate.Certificate
	json.Unmarshal(doc, &c)
	os.WriteFile(forgedPath, bytes.Replace(doc, []byte(c.Audit.RequestLast.Hash), []byte(strings.Repeat("0", 64)), 1), 0o600)

	out, err := runCommand(t, env, "audit", "verify", "--certificate", certPath)
	if err != nil {
		t.Fatalf("lethe audit verify on an untouched audit: %v", err)
	}
	if !strings.Contains(out, "audit chain intact: 9 events checked; head seq 9 hash ") ||
		!strings.Contains(out, "certificate "+certPath+": its audit links are in the chain") {
		t.Errorf("output = %q, want the intact summary of 9 events and the certificate's links found", out)
	}
	_, err = runCommand(t, env, "audit", "verify", "--certificate", certPath, "--certificate", forgedPath)
	if want := fmt.Sprintf("its request's last event, audit seq %d, has hash", c.Audit.RequestLast.Seq); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("audit verify with a certificate whose link differs: err = %v, want %q", err, want)
	}

	var editedID int64
	if err := db.QueryRow(`SELECT id FROM audit_events WHERE seq = 5`).Scan(&editedID); err != nil {
		t.Fatal(err)
	}
	auditTamper(t, db, `UPDATE audit_events SET detail = 'never dispatched' WHERE seq = 5`)
	out, err = runCommand(t, env, "audit", "verify")
	want := fmt.Sprintf("audit chain broken at seq 5 (id %d): hash_mismatch", editedID)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("after editing seq 5: err = %v, want %q", err, want)
	}
	if !strings.Contains(out, "4 events intact before seq 5") {
		t.Errorf("output = %q", out)
	}

	// Seq 4 is the received event of the second request, written with an
	// actor: blanking it breaks the chain there.
	var blankedID int64
	if err := db.QueryRow(`SELECT id FROM audit_events WHERE seq = 4 AND actor = 'token:svc-1'`).Scan(&blankedID); err != nil {
		t.Fatal(err)
	}
	auditTamper(t, db, `UPDATE audit_events SET actor = '' WHERE seq = 4`)
	_, err = runCommand(t, env, "audit", "verify")
	if want := fmt.Sprintf("audit chain broken at seq 4 (id %d): hash_mismatch", blankedID); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("after blanking the actor of seq 4: err = %v, want %q", err, want)
	}

	auditTamper(t, db, `DELETE FROM audit_events WHERE seq = 2`)
	_, err = runCommand(t, env, "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "audit chain broken at seq 2: missing_row") {
		t.Errorf("after deleting seq 2: err = %v, want seq 2 missing_row", err)
	}
}

func TestAuditCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "name a subcommand"},
		{[]string{"audit", "check"}, `unknown subcommand "check"`},
		{[]string{"audit", "verify", "extra"}, `unexpected argument "extra"`},
	} {
		if _, err := runCommand(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lethe %s: err = %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
