package connectors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

func TestMemoryDedupEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	d := connectors.NewMemoryDedup(2)
	conf := func(id string, records int64) wire.Confirmation {
		return wire.Confirmation{CommandID: id, Outcome: wire.OutcomeErased, Records: records}
	}
	put := func(c wire.Confirmation) {
		if err := d.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	get := func(id string) (wire.Confirmation, bool) {
		c, ok, err := d.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return c, ok
	}
	put(conf("a", 1))
	put(conf("b", 2))
	get("a") // a is now more recent than b
	put(conf("c", 3))

	if _, ok := get("b"); ok {
		t.Errorf("b kept, want it evicted as the least recently used")
	}
	for _, id := range []string{"a", "c"} {
		if _, ok := get(id); !ok {
			t.Errorf("%s evicted, want it kept", id)
		}
	}
	put(conf("a", 9))
	if c, _ := get("a"); c.Records != 9 {
		t.Errorf("a has %d records after Put, want the replacement's 9", c.Records)
	}
}

func TestMemoryDedupDefaultSize(t *testing.T) {
	ctx := context.Background()
	d := connectors.NewMemoryDedup(0)
	for i := range connectors.DefaultDedupSize + 1 {
		if err := d.Put(ctx, wire.Confirmation{CommandID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := d.Get(ctx, "0"); ok {
		t.Errorf("the oldest of %d entries kept, want a bound of %d", connectors.DefaultDedupSize+1, connectors.DefaultDedupSize)
	}
	if _, ok, _ := d.Get(ctx, "1"); !ok {
		t.Errorf("the second oldest entry evicted, want %d kept", connectors.DefaultDedupSize)
	}
}

// pendingStoreContract checks a PendingStore: states are recorded, replaced,
// kept apart from the confirmations and forgotten.
func pendingStoreContract(t *testing.T, s connectors.PendingStore) {
	t.Helper()
	ctx := context.Background()
	get := func(id string) (string, bool) {
		t.Helper()
		state, found, err := s.GetPending(ctx, id)
		if err != nil {
			t.Fatalf("GetPending: %v", err)
		}
		if !found {
			return "", false
		}
		// A store may keep the JSON in another spelling (jsonb does).
		var compact bytes.Buffer
		if err := json.Compact(&compact, state); err != nil {
			t.Fatalf("GetPending returned no JSON: %v", err)
		}
		return compact.String(), true
	}
	if _, found := get("a"); found {
		t.Fatalf("GetPending of an unknown command found a state")
	}
	for _, state := range []string{`{"attempt":1}`, `{"attempt":2}`} {
		if err := s.PutPending(ctx, "a", []byte(state)); err != nil {
			t.Fatalf("PutPending: %v", err)
		}
		if got, found := get("a"); !found || got != state {
			t.Errorf("GetPending = %q, %v; want %q, the last recorded", got, found, state)
		}
	}
	if _, found, err := s.Get(ctx, "a"); err != nil || found {
		t.Errorf("Get found a confirmation (%v, %v); a pending state is not one", found, err)
	}
	if _, found := get("b"); found {
		t.Errorf("GetPending of another command found a state")
	}
	for range 2 { // deleting twice is no error
		if err := s.DeletePending(ctx, "a"); err != nil {
			t.Fatalf("DeletePending: %v", err)
		}
	}
	if _, found := get("a"); found {
		t.Errorf("GetPending found a deleted state")
	}
}

func TestMemoryDedupKeepsPendingState(t *testing.T) {
	s, ok := connectors.NewMemoryDedup(1).(connectors.PendingStore)
	if !ok {
		t.Fatal("the memory store is not a PendingStore")
	}
	pendingStoreContract(t, s)
	// Pending states are not evicted with confirmations.
	ctx := context.Background()
	if err := s.PutPending(ctx, "p", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x", "y"} {
		if err := s.Put(ctx, wire.Confirmation{CommandID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, found, _ := s.GetPending(ctx, "p"); !found {
		t.Errorf("a pending state was evicted by confirmations")
	}
}
