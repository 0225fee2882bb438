package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/lethe-dev/lethe/schemas"
	"github.com/lethe-dev/lethe/wire"
)

var names = []string{wire.SchemaCommand, wire.SchemaConfirmation, wire.SchemaBatchCommand, wire.SchemaBatchConfirmation}

// compile compiles every embedded schema, asserting formats (date-time),
// which draft 2020-12 otherwise only annotates.
func compile(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := make(map[string]*jsonschema.Schema)
	for _, name := range names {
		b, ok := schemas.Get(name)
		if !ok {
			t.Fatalf("no schema %s", name)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s is not JSON: %v", name, err)
		}
		url := "https://schemas.invalid/" + name + ".json"
		if err := c.AddResource(url, doc); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		s, err := c.Compile(url)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func validate(s *jsonschema.Schema, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func TestNamesAndGet(t *testing.T) {
	if got := strings.Join(schemas.Names(), ","); got != "erasure.batch_command.v1,erasure.batch_confirmation.v1,erasure.command.v1,erasure.confirmation.v1" {
		t.Errorf("Names() = %s", got)
	}
	for _, bad := range []string{"", "../schemas", "erasure.command.v2", "erasure.command.v1.json"} {
		if _, ok := schemas.Get(bad); ok {
			t.Errorf("Get(%q) found a schema", bad)
		}
	}
}

// docExample matches a JSON block of docs/connectors.md that is a wire
// message.
var docExample = regexp.MustCompile("(?s)```json\n(\\{\n  \"schema\": \"erasure\\.[a-z_]+\\.v1\".*?)```")

// TestDocExamplesValidate validates every wire message shown in
// docs/connectors.md against its schema and with package wire, so that the
// docs, the schemas and the Go types say the same.
func TestDocExamplesValidate(t *testing.T) {
	sch := compile(t)
	doc, err := os.ReadFile("../docs/connectors.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range docExample.FindAllSubmatch(doc, -1) {
		msg := m[1]
		var head struct{ Schema string }
		if err := json.Unmarshal(msg, &head); err != nil {
			t.Fatalf("example is not JSON: %v\n%s", err, msg)
		}
		seen[head.Schema]++
		s, ok := sch[head.Schema]
		if !ok {
			t.Fatalf("example of unknown schema %q", head.Schema)
		}
		if err := validate(s, msg); err != nil {
			t.Errorf("example of %s does not validate: %v", head.Schema, err)
		}
		if err := decode(head.Schema, msg); err != nil {
			t.Errorf("package wire rejects the example of %s: %v", head.Schema, err)
		}
	}
	for _, name := range names {
		if seen[name] == 0 {
			t.Errorf("docs/connectors.md shows no example of %s", name)
		}
	}
}

func decode(schema string, b []byte) error {
	var err error
	switch schema {
	case wire.SchemaCommand:
		_, err = wire.DecodeCommand(b)
	case wire.SchemaConfirmation:
		_, err = wire.DecodeConfirmation(b)
	case wire.SchemaBatchCommand:
		_, err = wire.DecodeBatchCommand(b)
	case wire.SchemaBatchConfirmation:
		_, err = wire.DecodeBatchConfirmation(b)
	default:
		err = errors.New("unknown schema")
	}
	return err
}

const (
	id1 = "0b5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	id2 = "6f1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	id3 = "3a1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
)

var (
	t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	t1 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.FixedZone("", 3600))
	ds = []wire.Identifier{{Type: "stripe_customer_id", Value: "cus_123"}}
)

// goMessages are messages the Go types encode, each valid, covering every
// outcome and the optional fields present and absent.
func goMessages() map[string][]any {
	ids := []wire.Identifier{{Type: "user_id", Value: "u-1"}, {Type: "email", Value: "ada@example.com"}}
	return map[string][]any{
		wire.SchemaCommand: {
			wire.Command{Schema: wire.SchemaCommand, CommandID: id1, RequestID: id2, System: "orders", Attempt: 1, Identifiers: ids, IssuedAt: t0, ConfirmBy: t1},
			wire.Command{Schema: wire.SchemaCommand, CommandID: id1, RequestID: id2, System: "billing-eu", Attempt: 7, Identifiers: ids[:1], IssuedAt: t0, ConfirmBy: t1, DryRun: true},
		},
		wire.SchemaConfirmation: {
			wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: id1, RequestID: id2, System: "orders", Outcome: wire.OutcomeErased, Records: 3, DerivedIdentifiers: ds, ConfirmedAt: t0},
			wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: id1, RequestID: id2, System: "orders", Outcome: wire.OutcomeRetained, Detail: "tax law", ConfirmedAt: t1},
			wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: id1, RequestID: id2, System: "orders", Outcome: wire.OutcomeFailed, Retryable: true, Detail: "db down", ConfirmedAt: t0},
			wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: id1, RequestID: id2, System: "orders", Outcome: wire.OutcomeNotFound, ConfirmedAt: t0},
		},
		wire.SchemaBatchCommand: {
			wire.BatchCommand{Schema: wire.SchemaBatchCommand, CommandID: id1, BatchID: id2, System: "orders", Attempt: 2, IssuedAt: t0, ConfirmBy: t1,
				Items: []wire.BatchItem{{ItemID: id1, Identifiers: ids}, {ItemID: id3, Identifiers: ids[1:]}}},
		},
		wire.SchemaBatchConfirmation: {
			wire.BatchConfirmation{Schema: wire.SchemaBatchConfirmation, CommandID: id1, BatchID: id2, System: "orders", ConfirmedAt: t0,
				Items: []wire.ItemOutcome{
					{ItemID: id1, Outcome: wire.OutcomeErased, Records: 2, DerivedIdentifiers: ds},
					{ItemID: id2, Outcome: wire.OutcomeFailed, Retryable: true, Detail: "shard read-only"},
					{ItemID: id3, Outcome: wire.OutcomeRetained, Detail: "tax law"},
				}},
		},
	}
}

// TestGoMessagesValidate: what the Go types encode, and package wire
// accepts, the schemas accept.
func TestGoMessagesValidate(t *testing.T) {
	sch := compile(t)
	for name, msgs := range goMessages() {
		for i, m := range msgs {
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := decode(name, b); err != nil {
				t.Fatalf("%s message %d is not valid in Go: %v", name, i, err)
			}
			if err := validate(sch[name], b); err != nil {
				t.Errorf("%s message %d does not validate: %v\n%s", name, i, err, b)
			}
		}
	}
}

// TestInvalidMessagesRejected breaks a valid message of each schema in
// each way JSON Schema can express and package wire refuses, and checks
// that both refuse it.
func TestInvalidMessagesRejected(t *testing.T) {
	sch := compile(t)
	type edit struct {
		name string
		path []any // keys and indexes to the field; nil value deletes it
		val  any
	}
	del := struct{}{}
	long := strings.Repeat("x", 1025)
	common := []edit{
		{"schema", []any{"schema"}, "erasure.other.v1"},
		{"no schema", []any{"schema"}, del},
		{"command_id", []any{"command_id"}, "0B5C1A2B-3C4D-4E5F-8A9B-0C1D2E3F4A5B"},
		{"no command_id", []any{"command_id"}, del},
		{"system", []any{"system"}, "Orders"},
		{"system type", []any{"system"}, 7},
	}
	commands := []edit{
		{"attempt 0", []any{"attempt"}, 0},
		{"attempt fraction", []any{"attempt"}, 1.5},
		{"issued_at", []any{"issued_at"}, "yesterday"},
		{"issued_at offset", []any{"issued_at"}, "2026-11-25T10:00:00+24:00"},
		{"no confirm_by", []any{"confirm_by"}, del},
		{"dry_run type", []any{"dry_run"}, "no"},
	}
	outcomes := func(at ...any) []edit {
		p := func(k string) []any { return append(append([]any{}, at...), k) }
		return []edit{
			{"outcome", p("outcome"), "gone"},
			{"no outcome", p("outcome"), del},
			{"records", p("records"), -1},
			{"retained without detail", p("outcome"), "retained"},
			{"detail", p("detail"), strings.Repeat("d", 4097)},
			{"derived empty value", append(p("derived_identifiers"), 0, "value"), ""},
			{"derived type", append(p("derived_identifiers"), 0, "type"), "Stripe"},
		}
	}
	cases := map[string][]edit{
		wire.SchemaCommand: append(append(append([]edit{}, common...), commands...),
			edit{"request_id", []any{"request_id"}, "r-1"},
			edit{"no identifiers", []any{"identifiers"}, []any{}},
			edit{"identifier type", []any{"identifiers", 0, "type"}, "User"},
			edit{"identifier value", []any{"identifiers", 0, "value"}, ""},
			edit{"identifier value long", []any{"identifiers", 0, "value"}, long},
		),
		wire.SchemaConfirmation: append(append(append([]edit{}, common...), outcomes()...),
			edit{"request_id", []any{"request_id"}, del},
			edit{"confirmed_at", []any{"confirmed_at"}, del},
		),
		wire.SchemaBatchCommand: append(append(append([]edit{}, common...), commands...),
			edit{"batch_id", []any{"batch_id"}, "b-1"},
			edit{"no items", []any{"items"}, []any{}},
			edit{"item_id", []any{"items", 1, "item_id"}, "i-1"},
			edit{"item without identifiers", []any{"items", 0, "identifiers"}, del},
			edit{"item identifier value", []any{"items", 1, "identifiers", 0, "value"}, ""},
		),
		wire.SchemaBatchConfirmation: append(append(append([]edit{}, common...), outcomes("items", 0)...),
			edit{"batch_id", []any{"batch_id"}, del},
			edit{"no items", []any{"items"}, []any{}},
			edit{"item_id", []any{"items", 2, "item_id"}, 12},
			edit{"retryable erased", []any{"items", 0, "retryable"}, true},
			edit{"confirmed_at", []any{"confirmed_at"}, "2026-11-25 10:00:00"},
		),
	}
	for name, edits := range cases {
		base, err := json.Marshal(goMessages()[name][0])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range edits {
			t.Run(name+"/"+e.name, func(t *testing.T) {
				var doc any
				if err := json.Unmarshal(base, &doc); err != nil {
					t.Fatal(err)
				}
				set(t, doc, e.path, e.val, del)
				b, _ := json.Marshal(doc)
				if err := decode(name, b); err == nil {
					t.Fatalf("package wire accepts %s", b)
				}
				if err := validate(sch[name], b); err == nil {
					t.Errorf("the schema accepts what package wire refuses: %s", b)
				}
			})
		}
	}
	// Too many items: both refuse a batch of MaxBatchItems+1.
	items := make([]wire.BatchItem, wire.MaxBatchItems+1)
	for i := range items {
		items[i] = wire.BatchItem{ItemID: strings.Replace(id1, "0b5c1a2b", strings.Repeat("0", 8-len(itoa(i)))+itoa(i), 1),
			Identifiers: []wire.Identifier{{Type: "user_id", Value: "u"}}}
	}
	big := goMessages()[wire.SchemaBatchCommand][0].(wire.BatchCommand)
	big.Items = items
	b, _ := json.Marshal(big)
	if decode(wire.SchemaBatchCommand, b) == nil || validate(sch[wire.SchemaBatchCommand], b) == nil {
		t.Errorf("a batch of %d items is accepted", len(items))
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// set changes doc at path to val, or deletes the field when val is del.
func set(t *testing.T, doc any, path []any, val, del any) {
	t.Helper()
	for i, k := range path {
		last := i == len(path)-1
		switch node := doc.(type) {
		case map[string]any:
			key := k.(string)
			if last {
				if val == del {
					delete(node, key)
				} else {
					node[key] = val
				}
				return
			}
			if _, ok := node[key]; !ok {
				node[key] = []any{map[string]any{"type": "x", "value": "y"}}
			}
			doc = node[key]
		case []any:
			doc = node[k.(int)]
		default:
			t.Fatalf("path %v does not lead into the message", path)
		}
	}
}
