package registry_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/registry"
)

func testSigner(t *testing.T) *certificate.Signer {
	t.Helper()
	s, err := certificate.NewSigner(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// finishedRequest creates a request and takes it to completed at the given time
// through the ledger, with two systems and a batch.
func finishedRequest(t *testing.T, s *registry.Store, at time.Time) lethe.Erasure {
	t.Helper()
	in := newErasure(at.Add(-time.Minute), lethe.SubjectDigest{Type: "email", Digest: "e1"}, lethe.SubjectDigest{Type: "user_id", Digest: "u1"})
	create(t, s, in)
	if err := s.ApplyLedger(testContext(t), in.ID, lethe.LedgerDelta{
		Status:      lethe.RequestCompleted,
		CompletedAt: &at,
		Systems: []lethe.SystemProgress{
			{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 4, ConfirmedAt: &at},
			{Name: "billing", Status: lethe.SystemRetained, Attempts: 1, Records: 1, ConfirmedAt: &at, Detail: "tax law"},
		},
		Events: []lethe.AuditEvent{{Kind: lethe.AuditCompleted}},
		Batch:  "final",
	}); err != nil {
		t.Fatalf("ApplyLedger: %v", err)
	}
	e, err := s.GetErasure(testContext(t), in.ID)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCertificateFactsAndStorage(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	e := finishedRequest(t, s, t0.Add(time.Hour))

	f, err := s.CertificateFacts(ctx, e.ID)
	if err != nil {
		t.Fatalf("CertificateFacts: %v", err)
	}
	last, _ := s.RequestAuditHead(ctx, e.ID)
	head, _ := s.AuditHead(ctx)
	if f.Erasure.ID != e.ID || len(f.Erasure.Systems) != 2 || len(f.Subject) != 2 ||
		f.RequestLast != (certificate.Link{Seq: last.Seq, Hash: last.Hash}) ||
		f.ChainHead != (certificate.Link{Seq: head.Seq, Hash: head.Hash}) || f.RequestLast.Seq == 0 {
		t.Errorf("CertificateFacts = %+v", f)
	}
	if _, err := s.CertificateFacts(ctx, uuid.NewString()); lethe.ErrorCode(err) != "erasure_not_found" {
		t.Errorf("CertificateFacts of an unknown request = %v, want erasure_not_found", err)
	}

	if _, found, err := s.StoredCertificate(ctx, e.ID); found || err != nil {
		t.Errorf("StoredCertificate before issue = %v, %v; want none", found, err)
	}
	first, err := s.SaveCertificate(ctx, e.ID, "kid-1", t0, []byte("first"))
	if err != nil || string(first) != "first" {
		t.Fatalf("SaveCertificate = %q, %v", first, err)
	}
	second, err := s.SaveCertificate(ctx, e.ID, "kid-2", t0, []byte("second"))
	if err != nil || string(second) != "first" {
		t.Errorf("second SaveCertificate = %q, %v; want the first one kept", second, err)
	}
	if doc, found, err := s.StoredCertificate(ctx, e.ID); !found || err != nil || string(doc) != "first" {
		t.Errorf("StoredCertificate = %q, %v, %v", doc, found, err)
	}
	if _, err := s.SaveCertificate(ctx, uuid.NewString(), "kid", t0, []byte("x")); lethe.ErrorCode(err) != "erasure_not_found" {
		t.Errorf("SaveCertificate of an unknown request = %v, want erasure_not_found", err)
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE erasure_certificates SET document = 'forged'`); err == nil {
		t.Error("a stored certificate was rewritten")
	}
}

func countRows(t *testing.T, s *registry.Store, table, id string) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(testContext(t),
		`SELECT count(*) FROM `+table+` WHERE request_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPrune(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	signer := testSigner(t)
	issuer := &certificate.Issuer{Store: s, Signer: signer, Now: clk.Now}

	old := finishedRequest(t, s, t0.Add(time.Hour))
	recent := finishedRequest(t, s, t0.Add(30*time.Hour))
	running := newErasure(t0)
	create(t, s, running)
	auditBefore := countAudit(t, s.DB())

	clk.Advance(48 * time.Hour)
	cutoff := t0.Add(24 * time.Hour)
	n, err := s.Prune(ctx, cutoff, func(ctx context.Context, id string) error {
		_, err := issuer.Certificate(ctx, id)
		return err
	})
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the one old request pruned", n, err)
	}

	got, err := s.GetErasure(ctx, old.ID)
	if err != nil {
		t.Fatalf("GetErasure of a pruned request: %v", err)
	}
	if got.PrunedAt == nil || !got.PrunedAt.Equal(clk.Now()) || len(got.Systems) != 0 || got.Status != lethe.RequestCompleted {
		t.Errorf("pruned request = %+v, want pruned_at now, no systems, still completed", got)
	}
	for table, want := range map[string]int{"erasure_systems": 0, "ledger_batches": 0, "request_subjects": 2, "erasure_certificates": 1} {
		if n := countRows(t, s, table, old.ID); n != want {
			t.Errorf("%s of the pruned request: %d rows, want %d", table, n, want)
		}
	}
	for _, id := range []string{recent.ID, running.ID} {
		if e, _ := s.GetErasure(ctx, id); e.PrunedAt != nil {
			t.Errorf("request %s pruned too early: %+v", id, e)
		}
	}
	if countRows(t, s, "erasure_systems", recent.ID) != 2 {
		t.Error("the recent request lost its systems")
	}

	// The audit kept every row and gained the pruned event, and the chain holds.
	events, _ := s.Audit(ctx, old.ID)
	if last := events[len(events)-1]; last.Kind != lethe.AuditPruned {
		t.Errorf("last event of the pruned request = %+v, want pruned", last)
	}
	if v := verifyIntact(t, s); v.Checked != auditBefore+1 {
		t.Errorf("chain after pruning: %d rows checked, want %d", v.Checked, auditBefore+1)
	}

	// The certificate issued before pruning still verifies and still says
	// what was erased, and is what the issuer serves now.
	doc, found, err := s.StoredCertificate(ctx, old.ID)
	if !found || err != nil {
		t.Fatalf("StoredCertificate after pruning = %v, %v", found, err)
	}
	c, _, err := certificate.Verify(doc, []ed25519.PublicKey{signer.Public()})
	if err != nil || len(c.Systems) != 2 || c.Systems[0].Name != "billing" || c.Systems[1].Records != 4 {
		t.Errorf("certificate after pruning = %+v, %v", c, err)
	}
	served, err := issuer.Certificate(ctx, old.ID)
	if err != nil || !bytes.Equal(served, doc) {
		t.Errorf("issuer after pruning = %v, want the stored certificate", err)
	}

	// Pruning again finds nothing to do; a late delta changes no systems.
	if n, err := s.Prune(ctx, cutoff, func(context.Context, string) error { return nil }); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
	if err := s.ApplyLedger(ctx, old.ID, lethe.LedgerDelta{
		Systems: []lethe.SystemProgress{{Name: "late", Status: lethe.SystemErased}},
		Events:  []lethe.AuditEvent{{Kind: lethe.AuditConfirmationLate, System: "late"}},
	}); err != nil {
		t.Fatal(err)
	}
	if countRows(t, s, "erasure_systems", old.ID) != 0 {
		t.Error("a late delta brought systems back to a pruned request")
	}
}

func TestPruneNeedsACertificate(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	e := finishedRequest(t, s, t0)
	clk.Advance(48 * time.Hour)
	boom := errors.New("no key")
	n, err := s.Prune(ctx, t0.Add(time.Hour), func(context.Context, string) error { return boom })
	if n != 0 || !errors.Is(err, boom) {
		t.Errorf("Prune with a failing certify = %d, %v; want 0 and its error", n, err)
	}
	// A certify that says yes without storing one cannot let a request go.
	if n, err := s.Prune(ctx, t0.Add(time.Hour), func(context.Context, string) error { return nil }); n != 0 || err != nil {
		t.Errorf("Prune without a stored certificate = %d, %v; want nothing pruned", n, err)
	}
	if countRows(t, s, "erasure_systems", e.ID) != 2 {
		t.Error("a request without a certificate lost its systems")
	}
}

// TestPruneConcurrently runs several pruners, as several API replicas
// would: each request is pruned once, with one pruned event.
func TestPruneConcurrently(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	issuer := &certificate.Issuer{Store: s, Signer: testSigner(t), Now: clk.Now}
	const requests, pruners = 12, 4
	for i := range requests {
		finishedRequest(t, s, t0.Add(time.Duration(i)*time.Minute))
	}
	clk.Advance(48 * time.Hour)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range pruners {
		wg.Go(func() {
			n, err := s.Prune(ctx, t0.Add(24*time.Hour), func(ctx context.Context, id string) error {
				_, err := issuer.Certificate(ctx, id)
				return err
			})
			if err != nil {
				t.Errorf("Prune: %v", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != requests {
		t.Errorf("pruners pruned %d requests in all, want %d", total, requests)
	}
	var events int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'pruned'`).Scan(&events); err != nil || events != requests {
		t.Errorf("%d pruned events (%v), want %d", events, err, requests)
	}
	verifyIntact(t, s)
}
