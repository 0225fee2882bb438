package registry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// t0 is the tests' epoch, at PostgreSQL's microsecond precision so that
// times read back compare equal.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// clock is a settable time source for Store.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newStore returns a store on a fresh migrated database with a clock at t0.
func newStore(t *testing.T) (*registry.Store, *clock) {
	t.Helper()
	db, _ := testenv.Postgres(t)
	c := &clock{now: t0}
	s := registry.New(db)
	s.Now = c.Now
	return s, c
}

// testContext bounds every test so a hung query fails it instead of hanging.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err is a *lethe.Error of that kind and code.
func wantCode(t *testing.T, err error, kind lethe.Kind, code string) {
	t.Helper()
	var e *lethe.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *lethe.Error %s", err, code)
	}
	if e.Kind != kind || e.Code != code {
		t.Fatalf("err = kind %d code %q, want kind %d code %q", e.Kind, e.Code, kind, code)
	}
}

// newErasure describes a request with a fresh id.
func newErasure(at time.Time, subject ...lethe.SubjectDigest) registry.NewErasure {
	if len(subject) == 0 {
		subject = []lethe.SubjectDigest{{Type: "user_id", Digest: "aa11"}}
	}
	id := uuid.NewString()
	return registry.NewErasure{
		ID:          id,
		RequestHash: "hash-" + id,
		Subject:     subject,
		Reason:      "gdpr_art17",
		RequestedBy: "support:ticket-991",
		CreatedAt:   at,
		Deadline:    at.Add(lethe.DefaultDeadline),
		WorkflowID:  "erasure-" + id,
	}
}

// create records in with a start that succeeds, failing the test otherwise.
func create(t *testing.T, s *registry.Store, in registry.NewErasure) lethe.Erasure {
	t.Helper()
	e, created, err := s.CreateErasure(testContext(t), in, func(context.Context) error { return nil })
	if err != nil || !created {
		t.Fatalf("CreateErasure = created %v, err %v; want created", created, err)
	}
	return e
}

func ptr[T any](v T) *T { return &v }

// ops is the registry writer of most tests: a principal allowed to change
// topics.
var ops = registry.SystemWrite{Actor: "token:ops", MayChangeTopic: true}
