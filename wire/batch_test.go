package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

func itemID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func goodBatchCommand(n int) wire.BatchCommand {
	c := wire.BatchCommand{
		Schema: wire.SchemaBatchCommand, CommandID: fuzzCommandID, BatchID: fuzzRequestID, System: "orders", Attempt: 1,
		IssuedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), ConfirmBy: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
	}
	for i := range n {
		c.Items = append(c.Items, wire.BatchItem{ItemID: itemID(i), Identifiers: []wire.Identifier{{Type: "email", Value: secret}}})
	}
	return c
}

func goodBatchConfirmation(n int) wire.BatchConfirmation {
	c := wire.BatchConfirmation{
		Schema: wire.SchemaBatchConfirmation, CommandID: fuzzCommandID, BatchID: fuzzRequestID, System: "orders",
		ConfirmedAt: time.Date(2026, 11, 25, 10, 0, 2, 0, time.UTC),
	}
	for i := range n {
		c.Items = append(c.Items, wire.ItemOutcome{ItemID: itemID(i), Outcome: wire.OutcomeErased, Records: 2,
			DerivedIdentifiers: []wire.Identifier{{Type: "stripe_customer_id", Value: secret}}})
	}
	return c
}

func TestBatchCommandValidate(t *testing.T) {
	if err := goodBatchCommand(3).Validate(); err != nil {
		t.Fatalf("good batch command rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*wire.BatchCommand)
		want string
	}{
		{"schema", func(c *wire.BatchCommand) { c.Schema = wire.SchemaCommand }, `schema is not "erasure.batch_command.v1"`},
		{"batch id", func(c *wire.BatchCommand) { c.BatchID = "b" }, "batch_id is not a UUID"},
		{"no items", func(c *wire.BatchCommand) { c.Items = nil }, "items is empty"},
		{"too many items", func(c *wire.BatchCommand) { *c = goodBatchCommand(wire.MaxBatchItems + 1) }, "items has more than 1000 entries"},
		{"item id", func(c *wire.BatchCommand) { c.Items[1].ItemID = secret }, "items[1].item_id is not a UUID"},
		{"repeated item", func(c *wire.BatchCommand) { c.Items[2].ItemID = c.Items[0].ItemID }, "items[2].item_id repeats items[0].item_id"},
		{"no identifiers", func(c *wire.BatchCommand) { c.Items[1].Identifiers = nil }, "items[1].identifiers is empty"},
		{"bad type", func(c *wire.BatchCommand) { c.Items[2].Identifiers[0].Type = secret }, "items[2].identifiers[0].type is not a valid identifier type"},
		{"attempt", func(c *wire.BatchCommand) { c.Attempt = 0 }, "attempt is below 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goodBatchCommand(3)
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, wire.ErrMalformed) || !strings.HasSuffix(err.Error(), ": "+tc.want) {
				t.Fatalf("err = %v, want ErrMalformed ending %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q quotes a value", err)
			}
		})
	}
}

func TestBatchConfirmationValidate(t *testing.T) {
	if err := goodBatchConfirmation(3).Validate(); err != nil {
		t.Fatalf("good batch confirmation rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*wire.BatchConfirmation)
		want string
	}{
		{"schema", func(c *wire.BatchConfirmation) { c.Schema = wire.SchemaConfirmation }, `schema is not "erasure.batch_confirmation.v1"`},
		{"no items", func(c *wire.BatchConfirmation) { c.Items = nil }, "items is empty"},
		{"outcome", func(c *wire.BatchConfirmation) { c.Items[1].Outcome = "gone" }, "items[1].outcome is not one of erased, not_found, retained, failed"},
		{"retained", func(c *wire.BatchConfirmation) { c.Items[2].Outcome = wire.OutcomeRetained }, "items[2].a retained outcome must name its legal basis in detail"},
		{"retryable", func(c *wire.BatchConfirmation) { c.Items[0].Retryable = true }, "items[0].retryable is only meaningful with outcome failed"},
		{"records", func(c *wire.BatchConfirmation) { c.Items[1].Records = -1 }, "items[1].records is negative"},
		{"derived", func(c *wire.BatchConfirmation) { c.Items[1].DerivedIdentifiers[0].Value = "" }, "items[1].derived_identifiers[0].value is empty"},
		{"repeated item", func(c *wire.BatchConfirmation) { c.Items[1].ItemID = c.Items[0].ItemID }, "items[1].item_id repeats items[0].item_id"},
		{"confirmed_at", func(c *wire.BatchConfirmation) { c.ConfirmedAt = time.Time{} }, "confirmed_at is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goodBatchConfirmation(3)
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, wire.ErrMalformed) || !strings.HasSuffix(err.Error(), ": "+tc.want) {
				t.Fatalf("err = %v, want ErrMalformed ending %q", err, tc.want)
			}
		})
	}
}

func TestDecodeBatchMessagesRoundTrip(t *testing.T) {
	cmd := goodBatchCommand(2)
	got, err := wire.DecodeBatchCommand(mustMarshal(t, cmd))
	if err != nil || len(got.Items) != 2 || got.Items[1].ItemID != itemID(1) || got.Items[0].Identifiers[0].Value != secret {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	conf := goodBatchConfirmation(2)
	gotc, err := wire.DecodeBatchConfirmation(mustMarshal(t, conf))
	if err != nil || len(gotc.Items) != 2 || gotc.Items[1].Records != 2 {
		t.Fatalf("decoded %+v, %v", gotc, err)
	}
	// A single command is not a batch command, and the other way round.
	if _, err := wire.DecodeBatchCommand(encode(t, goodCommand(), nil)); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("single command decoded as a batch: %v", err)
	}
	if _, err := wire.DecodeCommand(mustMarshal(t, cmd)); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("batch command decoded as a single one: %v", err)
	}
}

// TestPackBatchCommandsKeepsBothLimits packs more items than one command
// may hold, and items so large that the byte limit binds first.
func TestPackBatchCommandsKeepsBothLimits(t *testing.T) {
	tmpl := goodBatchCommand(0)
	ids := 0
	newID := func() string { ids++; return itemID(900000 + ids) }

	items := goodBatchCommand(2500).Items
	cmds, err := wire.PackBatchCommands(tmpl, items, newID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 3 || len(cmds[0].Items) != wire.MaxBatchItems || len(cmds[2].Items) != 500 {
		t.Fatalf("2500 small items packed into %d commands", len(cmds))
	}
	if cmds[0].CommandID == cmds[1].CommandID {
		t.Fatal("two commands share a command id")
	}

	big := strings.Repeat("x", wire.MaxValueBytes)
	items = nil
	for i := range 300 { // about 300 × 20 KiB: the byte limit binds
		var ids []wire.Identifier
		for j := range 20 {
			ids = append(ids, wire.Identifier{Type: fmt.Sprintf("t%d", j), Value: big})
		}
		items = append(items, wire.BatchItem{ItemID: itemID(i), Identifiers: ids})
	}
	cmds, err = wire.PackBatchCommands(tmpl, items, newID)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, c := range cmds {
		b, _ := json.Marshal(c)
		if len(b) > wire.MaxBatchBytes {
			t.Errorf("command %d encodes to %d bytes, over %d", i, len(b), wire.MaxBatchBytes)
		}
		if i < len(cmds)-1 {
			// Full: the next item would not have fit.
			next, _ := json.Marshal(items[total+len(c.Items)])
			if len(b)+1+len(next) <= wire.MaxBatchBytes {
				t.Errorf("command %d (%d bytes) had room for the next item", i, len(b))
			}
		}
		if _, err := wire.DecodeBatchCommand(b); err != nil {
			t.Errorf("command %d does not decode: %v", i, err)
		}
		total += len(c.Items)
	}
	if total != len(items) || len(cmds) < 2 {
		t.Fatalf("%d items packed into %d commands holding %d", len(items), len(cmds), total)
	}
}

func TestPackBatchConfirmationsSplitsLargeAnswers(t *testing.T) {
	conf := goodBatchConfirmation(wire.MaxBatchItems)
	for i := range conf.Items {
		conf.Items[i].Outcome, conf.Items[i].Detail = wire.OutcomeRetained, strings.Repeat("d", wire.MaxDetailBytes)
	}
	parts, err := wire.PackBatchConfirmations(conf, conf.Items)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range parts {
		b, _ := json.Marshal(p)
		if len(b) > wire.MaxBatchBytes {
			t.Errorf("a part encodes to %d bytes", len(b))
		}
		n += len(p.Items)
	}
	if n != wire.MaxBatchItems || len(parts) < 4 {
		t.Fatalf("%d parts carrying %d items", len(parts), n)
	}
	if _, err := wire.PackBatchConfirmations(conf, nil); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("no items: err = %v", err)
	}
}
