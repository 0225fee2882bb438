package connectors_test

import (
	"context"
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
