package registry_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// unreachableURL names a port nothing listens on.
const unreachableURL = "postgres://postgres@127.0.0.1:1/lethe?sslmode=disable&connect_timeout=5"

// calls exercises every method of the store once.
func calls() map[string]func(context.Context, *registry.Store) error {
	id := uuid.NewString()
	return map[string]func(context.Context, *registry.Store) error{
		"Ping": func(ctx context.Context, s *registry.Store) error { return s.Ping(ctx) },
		"PutSystem": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"user_id"}}, ops)
			return err
		},
		"GetSystem": func(ctx context.Context, s *registry.Store) error {
			_, err := s.GetSystem(ctx, "orders")
			return err
		},
		"ListSystems": func(ctx context.Context, s *registry.Store) error {
			_, err := s.ListSystems(ctx)
			return err
		},
		"RetireSystem": func(ctx context.Context, s *registry.Store) error { return s.RetireSystem(ctx, "orders", "token:ops") },
		"MatchSystems": func(ctx context.Context, s *registry.Store) error {
			_, err := s.MatchSystems(ctx, []string{"user_id"})
			return err
		},
		"CreateErasure": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.CreateErasure(ctx, newErasure(t0), func(context.Context) error { return nil })
			return err
		},
		"GetErasure": func(ctx context.Context, s *registry.Store) error {
			_, err := s.GetErasure(ctx, id)
			return err
		},
		"ListErasures": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.ListErasures(ctx, registry.ErasureFilter{})
			return err
		},
		"ApplyLedger": func(ctx context.Context, s *registry.Store) error {
			return s.ApplyLedger(ctx, id, lethe.LedgerDelta{Status: lethe.RequestRunning})
		},
		"AppendAudit": func(ctx context.Context, s *registry.Store) error {
			return s.AppendAudit(ctx, []lethe.AuditEvent{{RequestID: id, Kind: lethe.AuditConfirmationRejected}})
		},
		"Audit": func(ctx context.Context, s *registry.Store) error {
			_, err := s.Audit(ctx, id)
			return err
		},
		"SubjectDigests": func(ctx context.Context, s *registry.Store) error {
			_, err := s.SubjectDigests(ctx, id)
			return err
		},
		"ErasureRecorded": func(ctx context.Context, s *registry.Store) error {
			_, err := s.ErasureRecorded(ctx, id)
			return err
		},
		"CreateBatch": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.CreateBatch(ctx, newBatch(t0, "unavailable", 2), func(context.Context) error { return nil })
			return err
		},
		"BatchRecorded": func(ctx context.Context, s *registry.Store) error {
			_, err := s.BatchRecorded(ctx, id)
			return err
		},
		"GetBatch": func(ctx context.Context, s *registry.Store) error {
			_, err := s.GetBatch(ctx, id)
			return err
		},
		"ListBatches": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.ListBatches(ctx, registry.BatchFilter{})
			return err
		},
		"ListBatchSubjects": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: id})
			return err
		},
		"RetryBatch": func(ctx context.Context, s *registry.Store) error {
			_, err := s.RetryBatch(ctx, id, "token:ops", nil, nil)
			return err
		},
		"AuditBatchCancel": func(ctx context.Context, s *registry.Store) error {
			return s.AuditBatchCancel(ctx, id, "token:ops")
		},
		"BatchLeaves": func(ctx context.Context, s *registry.Store) error {
			_, err := s.BatchLeaves(ctx, id)
			return err
		},
		"BatchSubjectByDigest": func(ctx context.Context, s *registry.Store) error {
			_, err := s.BatchSubjectByDigest(ctx, id, "dd")
			return err
		},
		"BatchCertificateFacts": func(ctx context.Context, s *registry.Store) error {
			_, err := s.BatchCertificateFacts(ctx, id)
			return err
		},
		"GetBatchCertificate": func(ctx context.Context, s *registry.Store) error {
			_, _, err := s.GetBatchCertificate(ctx, id)
			return err
		},
		"PutBatchCertificate": func(ctx context.Context, s *registry.Store) error {
			doc := `{"format": "` + certificate.BatchFormat + `", "batch_id": "` + id + `", "issued_at": "2026-11-25T10:00:00Z"}`
			return s.PutBatchCertificate(ctx, id, []byte(doc))
		},
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	t.Run("Open", func(t *testing.T) {
		s, err := registry.Open(ctx, unreachableURL)
		if err == nil {
			s.Close()
			t.Fatalf("Open on an unreachable server succeeded")
		}
		wantCode(t, err, lethe.KindUnavailable, "database_unavailable")
		var ne net.Error
		if !errors.As(err, &ne) {
			t.Errorf("the network error is not reachable from %v", err)
		}
	})

	db, err := sql.Open("postgres", unreachableURL)
	if err != nil {
		t.Fatal(err)
	}
	s := registry.New(db)
	defer s.Close()
	for name, call := range calls() {
		t.Run(name, func(t *testing.T) {
			wantCode(t, call(ctx, s), lethe.KindUnavailable, "database_unavailable")
		})
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, call := range calls() {
		t.Run(name, func(t *testing.T) {
			wantCode(t, call(ctx, s), lethe.KindUnavailable, "database_unavailable")
		})
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, dbURL := testenv.Postgres(t)
	s, err := registry.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if got := s.DB().Stats().MaxOpenConnections; got <= 0 {
		t.Errorf("MaxOpenConnections = %d, want a bound", got)
	}
	if _, _, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"user_id"}}, ops); err != nil {
		t.Errorf("PutSystem through an opened store: %v", err)
	}
}

func TestMalformedURLDoesNotLeakPassword(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const bad = "postgres://lethe:s3cret-pw@127.0.0.1:notaport/lethe"
	_, openErr := registry.Open(ctx, bad)
	ensureErr := registry.EnsureDatabase(ctx, bad)
	for name, err := range map[string]error{"Open": openErr, "EnsureDatabase": ensureErr} {
		if err == nil {
			t.Errorf("%s(malformed url) = nil, want an error", name)
			continue
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%s error %q contains the password", name, err)
		}
	}
}
