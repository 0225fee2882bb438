package connectors_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

func TestNewConfirmation(t *testing.T) {
	cmd := newCommand(uuid.NewString())
	now := time.Date(2026, 11, 25, 10, 0, 2, 0, time.FixedZone("CET", 3600))
	derived := []wire.Identifier{{Type: "stripe_customer_id", Value: "cus_123"}}
	tests := []struct {
		name       string
		result     connectors.Result
		want       wire.Outcome
		retryable  bool
		records    int64
		wantDetail string
	}{
		{"erased", connectors.Result{Outcome: wire.OutcomeErased, Records: 3, Derived: derived}, wire.OutcomeErased, false, 3, ""},
		{"retained", connectors.Result{Outcome: wire.OutcomeRetained, Detail: "HGB §257"}, wire.OutcomeRetained, false, 0, "HGB §257"},
		{"failed retryable", connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: "db down"}, wire.OutcomeFailed, true, 0, "db down"},
		{"unknown outcome", connectors.Result{Outcome: "gone", Records: 2}, wire.OutcomeFailed, false, 0, "handler returned an invalid outcome"},
		{"empty outcome", connectors.Result{}, wire.OutcomeFailed, false, 0, "handler returned an invalid outcome"},
		{"retained without basis", connectors.Result{Outcome: wire.OutcomeRetained}, wire.OutcomeFailed, false, 0, "handler returned an invalid result: a retained outcome must name its legal basis in detail"},
		{"retryable success", connectors.Result{Outcome: wire.OutcomeErased, Retryable: true}, wire.OutcomeFailed, false, 0, "handler returned an invalid result: retryable is only meaningful with outcome failed"},
		{"negative records", connectors.Result{Outcome: wire.OutcomeErased, Records: -1}, wire.OutcomeFailed, false, 0, "handler returned an invalid result: records is negative"},
		{"bad derived", connectors.Result{Outcome: wire.OutcomeErased, Derived: []wire.Identifier{{Type: "Bad Type", Value: "x"}}}, wire.OutcomeFailed, false, 0, "handler returned an invalid result: derived_identifiers[0].type is not a valid identifier type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connectors.NewConfirmation(cmd, tt.result, now)
			if err := c.Validate(); err != nil {
				t.Fatalf("confirmation does not validate: %v", err)
			}
			if c.Outcome != tt.want || c.Retryable != tt.retryable || c.Records != tt.records || c.Detail != tt.wantDetail {
				t.Errorf("got outcome=%s retryable=%v records=%d detail=%q, want %s %v %d %q",
					c.Outcome, c.Retryable, c.Records, c.Detail, tt.want, tt.retryable, tt.records, tt.wantDetail)
			}
			if c.CommandID != cmd.CommandID || c.RequestID != cmd.RequestID || c.System != cmd.System || c.Schema != wire.SchemaConfirmation {
				t.Errorf("confirmation %+v does not answer command %+v", c, cmd)
			}
			if !c.ConfirmedAt.Equal(now) || c.ConfirmedAt.Location() != time.UTC {
				t.Errorf("confirmed_at = %v, want %v in UTC", c.ConfirmedAt, now)
			}
		})
	}
}

func TestEncodeConfirmation(t *testing.T) {
	c := connectors.NewConfirmation(newCommand(uuid.NewString()), connectors.Result{Outcome: wire.OutcomeNotFound}, time.Now())
	m, err := connectors.EncodeConfirmation(c)
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != wire.ConfirmationsTopic || string(m.Key) != c.RequestID {
		t.Errorf("topic/key = %s/%s, want %s/%s", m.Topic, m.Key, wire.ConfirmationsTopic, c.RequestID)
	}
	if h, _ := connectors.Header(m, wire.HeaderSchema); h != wire.SchemaConfirmation {
		t.Errorf("schema header = %q", h)
	}
	back, err := wire.DecodeConfirmation(m.Value)
	if err != nil || back.CommandID != c.CommandID || back.Outcome != c.Outcome {
		t.Errorf("decoded %+v, %v; want %+v", back, err, c)
	}
	var raw map[string]any
	if err := json.Unmarshal(m.Value, &raw); err != nil || !strings.Contains(string(m.Value), `"schema":"erasure.confirmation.v1"`) {
		t.Errorf("value %s is not the contract's JSON", m.Value)
	}
}

func TestEncodeCommand(t *testing.T) {
	cmd := newCommand(uuid.NewString())
	m, err := connectors.EncodeCommand("lethe.erasure.orders", cmd)
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "lethe.erasure.orders" || string(m.Key) != cmd.RequestID {
		t.Errorf("topic/key = %s/%s", m.Topic, m.Key)
	}
	if h, _ := connectors.Header(m, wire.HeaderSchema); h != wire.SchemaCommand {
		t.Errorf("schema header = %q", h)
	}
	if back, err := wire.DecodeCommand(m.Value); err != nil || back.CommandID != cmd.CommandID {
		t.Errorf("decoded %+v, %v", back, err)
	}
}
