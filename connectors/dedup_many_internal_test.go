package connectors

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestPostgresDedupManyKeepsTheFirst records a batch's item confirmations
// in one round trip while another replica recorded one of them first: the
// earlier one is kept and returned for it, the others are recorded, and
// getMany finds them all.
func TestPostgresDedupManyKeepsTheFirst(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	ms := store.(manyStore)
	bc := internalBatch(3)
	now := time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC)
	var confs []wire.Confirmation
	for i, it := range bc.Items {
		confs = append(confs, NewConfirmation(itemCommand(&bc, it), Result{Outcome: wire.OutcomeErased, Records: int64(i + 1)}, now))
	}
	earlier := confs[1]
	earlier.Records = 99
	if err := store.Put(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	kept, err := ms.putFirstMany(ctx, confs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range confs {
		want := c.Records
		if i == 1 {
			want = 99
		}
		if got := kept[c.CommandID]; got.Records != want {
			t.Errorf("item %d kept with %d records, want %d", i, got.Records, want)
		}
	}
	got, err := ms.getMany(ctx, []string{confs[0].CommandID, confs[1].CommandID, confs[2].CommandID, uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[confs[1].CommandID].Records != 99 || got[confs[2].CommandID].Records != 3 {
		t.Errorf("getMany = %+v, want the three recorded items", got)
	}
}
