package roles

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

func TestPruneInterval(t *testing.T) {
	for _, tc := range []struct{ retention, want time.Duration }{
		{time.Second, time.Second},
		{time.Minute, 6 * time.Second},
		{90 * 24 * time.Hour, 10 * time.Minute},
	} {
		if got := PruneInterval(tc.retention); got != tc.want {
			t.Errorf("PruneInterval(%s) = %s, want %s", tc.retention, got, tc.want)
		}
	}
}

func TestPrunerValidate(t *testing.T) {
	signer, _ := certificate.NewSigner(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	full := Pruner{Store: registry.New(nil), Signer: signer, Retention: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if err := full.Validate(); err != nil {
		t.Errorf("Validate() of a complete pruner = %v", err)
	}
	for name, change := range map[string]func(*Pruner){
		"no store":  func(p *Pruner) { p.Store = nil },
		"no signer": func(p *Pruner) { p.Signer = nil },
		"retention": func(p *Pruner) { p.Retention = 0 },
		"no logger": func(p *Pruner) { p.Logger = nil },
	} {
		p := full
		change(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
}

// TestPrunerRun runs the pruner as `lethe api` does: it prunes a request
// finished longer than the retention ago, with its certificate issued
// first, leaves a recent one, and returns once its context ends.
func TestPrunerRun(t *testing.T) {
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	finish := func(at time.Time) string {
		id := uuid.NewString()
		if _, _, err := store.CreateErasure(ctx, registry.NewErasure{ID: id, CreatedAt: at,
			Subject: []lethe.SubjectDigest{{Type: "user_id", Digest: "d"}}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := store.ApplyLedger(ctx, id, lethe.LedgerDelta{Status: lethe.RequestCompleted, CompletedAt: &at}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	old, recent := finish(now.Add(-2*time.Hour)), finish(now.Add(-time.Minute))

	signer, _ := certificate.NewSigner(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	p := &Pruner{Store: store, Signer: signer, Retention: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	for {
		e, err := store.GetErasure(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		if e.PrunedAt != nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("pruner stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the old request was not pruned")
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after its context ended = %v, want context.Canceled", err)
	}
	if _, found, _ := store.StoredCertificate(ctx, old); !found {
		t.Error("the pruned request has no stored certificate")
	}
	if e, _ := store.GetErasure(ctx, recent); e.PrunedAt != nil {
		t.Error("the recent request was pruned")
	}
}
