package wire_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

const secret = "s3cret-value@example.com"

func goodCommand() map[string]any {
	return map[string]any{
		"schema": wire.SchemaCommand, "command_id": "0b5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
		"request_id": "6f1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "system": "orders", "attempt": 1,
		"identifiers": []map[string]string{{"type": "email", "value": secret}},
		"issued_at":   "2026-11-25T10:00:00Z", "confirm_by": "2026-11-28T10:00:00Z", "dry_run": false,
	}
}

func goodConfirmation() map[string]any {
	return map[string]any{
		"schema": wire.SchemaConfirmation, "command_id": "0b5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
		"request_id": "6f1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "system": "orders", "outcome": "erased",
		"records": 3, "detail": "", "retryable": false, "confirmed_at": "2026-11-25T10:00:02Z",
		"derived_identifiers": []map[string]string{{"type": "stripe_customer_id", "value": secret}},
	}
}

func encode(t *testing.T, m map[string]any, set map[string]any) []byte {
	t.Helper()
	c := map[string]any{}
	for k, v := range m {
		c[k] = v
	}
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeCommand(t *testing.T) {
	c, err := wire.DecodeCommand(encode(t, goodCommand(), nil))
	if err != nil {
		t.Fatalf("good command rejected: %v", err)
	}
	if c.System != "orders" || c.Attempt != 1 || len(c.Identifiers) != 1 || !c.IssuedAt.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("decoded %+v", c)
	}
	if _, err := wire.DecodeCommand(encode(t, goodCommand(), map[string]any{"future_field": 1})); err != nil {
		t.Errorf("an unknown field must be tolerated: %v", err)
	}
	bad := map[string]map[string]any{
		"wrong schema":        {"schema": "erasure.command.v0"},
		"command id not uuid": {"command_id": "abc"},
		"request id missing":  {"request_id": nil},
		"bad system":          {"system": "Orders"},
		"attempt zero":        {"attempt": 0},
		"no identifiers":      {"identifiers": []any{}},
		"empty value":         {"identifiers": []map[string]string{{"type": "email", "value": ""}}},
		"bad type":            {"identifiers": []map[string]string{{"type": "E-mail", "value": secret}}},
		"no issued_at":        {"issued_at": nil},
		"bad issued_at":       {"issued_at": secret},
		"attempt as string":   {"attempt": secret},
	}
	for name, set := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := wire.DecodeCommand(encode(t, goodCommand(), set))
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q echoes an identifier value", err)
			}
		})
	}
	for name, raw := range map[string]string{"empty": "", "not json": "{", "trailing": `{"schema":"x"} {}`, "array": "[]"} {
		if _, err := wire.DecodeCommand([]byte(raw)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := wire.DecodeCommand(make([]byte, wire.MaxMessageBytes+1)); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("oversized message: err = %v", err)
	}
}

func TestDecodeConfirmation(t *testing.T) {
	if _, err := wire.DecodeConfirmation(encode(t, goodConfirmation(), nil)); err != nil {
		t.Fatalf("good confirmation rejected: %v", err)
	}
	ok := map[string]map[string]any{
		"retained with basis":  {"outcome": "retained", "detail": "Art. 17(3)(b): tax records"},
		"failed retryable":     {"outcome": "failed", "retryable": true},
		"no derived":           {"derived_identifiers": nil},
		"not_found no records": {"outcome": "not_found", "records": 0},
	}
	for name, set := range ok {
		if _, err := wire.DecodeConfirmation(encode(t, goodConfirmation(), set)); err != nil {
			t.Errorf("%s rejected: %v", name, err)
		}
	}
	bad := map[string]map[string]any{
		"unknown outcome":        {"outcome": "deleted"},
		"retained without basis": {"outcome": "retained", "detail": ""},
		"retryable erased":       {"retryable": true},
		"negative records":       {"records": -1},
		"no confirmed_at":        {"confirmed_at": nil},
		"derived empty value":    {"derived_identifiers": []map[string]string{{"type": "x", "value": ""}}},
		"long detail":            {"detail": strings.Repeat("d", wire.MaxDetailBytes+1)},
	}
	for name, set := range bad {
		if _, err := wire.DecodeConfirmation(encode(t, goodConfirmation(), set)); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestTopics(t *testing.T) {
	if got := wire.DefaultTopic("orders"); got != "lethe.erasure.orders" {
		t.Errorf("DefaultTopic = %q", got)
	}
	if got := wire.DLQTopic(wire.ConfirmationsTopic); got != "lethe.erasure.confirmations.dlq" {
		t.Errorf("DLQTopic = %q", got)
	}
}
