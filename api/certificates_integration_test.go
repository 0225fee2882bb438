package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// TestCertificateAgainstRegistry issues a certificate over a real
// registry, prunes the request, and checks that the API then answers the
// pruned request with pruned_at and no systems, and the very same
// certificate, which still verifies.
func TestCertificateAgainstRegistry(t *testing.T) {
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	signer := signerFor(t, 4)
	h := newHarnessWith(t, func(c *api.Config) {
		c.Store = store
		c.Signer = signer
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	e := h.createErasure(t, certSubject)
	done := testNow.Add(time.Minute).Truncate(time.Microsecond)
	if err := store.ApplyLedger(ctx, e.ID, lethe.LedgerDelta{
		Status: lethe.RequestCompleted, CompletedAt: &done,
		Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 2, ConfirmedAt: &done}},
		Events:  []lethe.AuditEvent{{Kind: lethe.AuditCompleted}},
	}); err != nil {
		t.Fatal(err)
	}
	path := "/v1/erasures/" + e.ID + "/certificate"
	res := h.do(t, req{method: "GET", path: path})
	if res.status != http.StatusOK {
		t.Fatalf("GET certificate = %s", describe(res))
	}
	c, _, err := certificate.Verify(res.body, []ed25519.PublicKey{signer.Public()})
	if err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	last, _ := store.RequestAuditHead(ctx, e.ID)
	if c.Audit.RequestLast.Hash != last.Hash || c.Audit.ChainHead.Seq < last.Seq || len(c.Systems) != 1 {
		t.Errorf("certificate = %+v, want the request's last audit link %+v", c, last)
	}

	n, err := store.Prune(ctx, done.Add(time.Second), func(context.Context, string) error { return nil })
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	got := h.do(t, req{method: "GET", path: "/v1/erasures/" + e.ID})
	var pruned lethe.Erasure
	got.decode(t, &pruned)
	if got.status != http.StatusOK || pruned.PrunedAt == nil || len(pruned.Systems) != 0 || pruned.Status != lethe.RequestCompleted {
		t.Errorf("GET of the pruned request = %s", describe(got))
	}
	again := h.do(t, req{method: "GET", path: path})
	if again.status != http.StatusOK || !bytes.Equal(again.body, res.body) {
		t.Errorf("certificate after pruning = %s, want the same file", describe(again))
	}
}
