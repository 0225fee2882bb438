package connectors

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/lethe-dev/lethe/internal/testenv"
)

// TestDeferStores checks both stores of the SDK: replicas claiming due
// commands at once take each at most once; a claimed command is not
// claimed again until it is recorded anew (which releases it) or its lease
// ends; commands not yet due are left; a command claimed by id reports who
// holds it.
func TestDeferStores(t *testing.T) {
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]deferStore{"memory": NewMemoryDedup(0).(deferStore), "postgres": pg.(deferStore)} {
		t.Run(name, func(t *testing.T) { deferStoreContract(ctx, t, s) })
	}
}

func deferStoreContract(ctx context.Context, t *testing.T, s deferStore) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	due := make(map[string]bool)
	for i := 0; i < 20; i++ {
		d := Deferred{CommandID: uuid.NewString(), RequestID: uuid.NewString(), System: "orders", Attempt: 1,
			ConfirmBy: now.Add(time.Hour), Due: now.Add(-time.Minute), State: []byte(`{"n":1}`)}
		if i%4 == 0 {
			d.Due = now.Add(time.Minute) // not yet
		} else {
			due[d.CommandID] = true
		}
		if err := s.putDeferred(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	const replicas = 4
	var (
		mu      sync.Mutex
		claimed = make(map[string]int)
		wg      sync.WaitGroup
	)
	for r := 0; r < replicas; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds, err := s.claimDue(ctx, now, time.Minute, 10)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range ds {
				claimed[d.CommandID]++
			}
		}()
	}
	wg.Wait()
	if len(claimed) != len(due) {
		t.Errorf("claimed %d commands, want the %d due", len(claimed), len(due))
	}
	for id, n := range claimed {
		if n != 1 || !due[id] {
			t.Errorf("command claimed %d times (due %v), want once and only when due", n, due[id])
		}
	}
	if ds, err := s.claimDue(ctx, now, time.Minute, 100); err != nil || len(ds) != 0 {
		t.Errorf("claimDue while all are claimed = %d, %v; want none", len(ds), err)
	}
	var one string
	for id := range due {
		one = id
		break
	}
	if _, found, ok, err := s.claimDeferred(ctx, one, now, time.Minute); err != nil || !found || ok {
		t.Errorf("claimDeferred of a claimed command = found %v claimed %v %v; want found, not claimed", found, ok, err)
	}
	d, found, err := s.getDeferred(ctx, one)
	var state struct{ N int }
	if err != nil || !found || json.Unmarshal(d.State, &state) != nil || state.N != 1 || d.System != "orders" {
		t.Fatalf("getDeferred = %+v %v %v", d, found, err)
	}
	if err := s.putDeferred(ctx, d); err != nil { // releases the claim
		t.Fatal(err)
	}
	if _, found, ok, err := s.claimDeferred(ctx, one, now, time.Minute); err != nil || !found || !ok {
		t.Errorf("claimDeferred of a released command = found %v claimed %v %v; want claimed", found, ok, err)
	}
	if ds, err := s.claimDue(ctx, now.Add(2*time.Minute), time.Minute, 100); err != nil || len(ds) != 20 {
		t.Errorf("claimDue once the leases ended and all are due = %d, %v; want 20", len(ds), err)
	}
	if err := s.deleteDeferred(ctx, one); err != nil {
		t.Fatal(err)
	}
	if _, found, _, err := s.claimDeferred(ctx, one, now, time.Minute); err != nil || found {
		t.Errorf("claimDeferred of a deleted command = found %v %v; want not found", found, err)
	}
}
