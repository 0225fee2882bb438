package faults_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/wire"
)

// TestConfirmationFlood produces, while requests wait for a system,
// confirmations that must count for nothing: forged ones (well formed, but a
// command_id never issued, or issued to another system or request), late ones
// (for a request already completed, or one that never existed) and malformed
// ones (garbage, a wrong schema, a broken contract). The real requests
// complete with the real figures; every forged one is audited
// confirmation_rejected, every late one confirmation_late, every malformed
// one lands in the dead-letter topic, and the counts match exactly.
func TestConfirmationFlood(t *testing.T) {
	s := newStack(t, stackOptions{Worker: true, Relay: true})
	ctx, cancel := s.deadline()
	defer cancel()
	alpha, beta := newService("alpha", false), newService("beta", true)
	s.putSystem(alpha)
	done := s.submit(subject("flood", 0))
	s.awaitFinal(ctx, done.ID)
	s.putSystem(beta)
	var running []lethe.Erasure
	for i := 1; i <= 3; i++ {
		running = append(running, s.submit(subject("flood", i)))
	}
	eventually(t, ctx, "every running request waits for beta only", func() bool {
		for _, e := range running {
			if !s.systemIs(ctx, e.ID, alpha.name, lethe.SystemErased) {
				return false
			}
		}
		return s.published(beta.name) == int64(len(running))
	})
	// Beta's command ids, read off its topic as an eavesdropper would.
	betaCommand := map[string]string{}
	for _, c := range readCommands(t, ctx, s.Brokers, wire.DefaultTopic(beta.name), len(running)) {
		betaCommand[c.RequestID] = c.CommandID
	}

	now := time.Now().UTC()
	forge := func(requestID, commandID, system string) kafka.Message {
		return confirmationMessage(t, wire.Confirmation{
			Schema: wire.SchemaConfirmation, CommandID: commandID, RequestID: requestID, System: system,
			Outcome: wire.OutcomeErased, Records: 999, ConfirmedAt: now,
		})
	}
	var flood []kafka.Message
	for i, e := range running {
		other := running[(i+1)%len(running)]
		flood = append(flood,
			// A command_id nobody issued.
			forge(e.ID, uuid.NewString(), alpha.name),
			// Beta's command_id, claimed by alpha.
			forge(e.ID, betaCommand[e.ID], alpha.name),
			// Another request's command_id.
			forge(e.ID, alpha.commandOf(other.ID), alpha.name),
			// A system that is not even registered.
			forge(e.ID, uuid.NewString(), "ghost"),
		)
	}
	const forgedPerRequest = 4
	ghostRequest := uuid.NewString()
	flood = append(flood,
		// The real confirmation of a finished request, once more.
		forge(done.ID, alpha.commandOf(done.ID), alpha.name),
		forge(done.ID, uuid.NewString(), alpha.name),
		// A request that never existed.
		forge(ghostRequest, uuid.NewString(), alpha.name),
	)
	valid := forge(running[0].ID, uuid.NewString(), alpha.name).Value
	malformed := [][]byte{
		[]byte("not json at all \x00\xff"),
		{},
		valid[:len(valid)/2],
		mutate(t, valid, func(m map[string]any) { m["schema"] = "erasure.confirmation.v2" }),
		mutate(t, valid, func(m map[string]any) { m["outcome"] = "deleted" }),
		mutate(t, valid, func(m map[string]any) { m["outcome"] = "retained"; m["detail"] = "" }),
		mutate(t, valid, func(m map[string]any) { m["command_id"] = "1" }),
		mutate(t, valid, func(m map[string]any) { m["schema"] = wire.SchemaCommand }),
	}
	for _, v := range malformed {
		flood = append(flood, kafka.Message{Topic: wire.ConfirmationsTopic, Key: []byte(running[0].ID), Value: v,
			Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaConfirmation)}}})
	}
	w := kafkax.NewWriter(s.Brokers)
	defer w.Close()
	if err := w.WriteMessages(ctx, flood...); err != nil {
		t.Fatalf("produce the flood: %v", err)
	}

	for _, e := range running {
		eventually(t, ctx, "the forged confirmations of "+e.ID+" are audited as rejected", func() bool {
			return s.auditCount(ctx, e.ID, lethe.AuditConfirmationRejected) >= forgedPerRequest
		})
	}
	eventually(t, ctx, "the late confirmations are audited", func() bool {
		return s.auditCount(ctx, done.ID, lethe.AuditConfirmationLate) >= 2 &&
			s.auditCount(ctx, ghostRequest, lethe.AuditConfirmationLate) >= 1
	})
	eventually(t, ctx, "the malformed confirmations are dead-lettered", func() bool {
		return s.Relay.Stats().DeadLettered >= int64(len(malformed))
	})

	s.release(beta)
	all := append([]lethe.Erasure{done}, running...)
	s.awaitFinal(ctx, ids(all)...)
	s.verify(ctx, expectation{id: done.ID, status: lethe.RequestCompleted, erased: []string{alpha.name}, temporal: true})
	s.verify(ctx, expectCompleted(running, alpha.name, beta.name)...)

	for _, e := range running {
		if got := s.auditCount(ctx, e.ID, lethe.AuditConfirmationRejected); got != forgedPerRequest {
			t.Errorf("request %s: %d rejected confirmations audited, want %d", e.ID, got, forgedPerRequest)
		}
		if got := s.auditDetailCount(ctx, e.ID, lethe.AuditConfirmationRejected, "command_id was not issued to this system"); got != 1 {
			t.Errorf("request %s: %d confirmations rejected for naming another system's command, want 1", e.ID, got)
		}
	}
	if got := s.auditCount(ctx, done.ID, lethe.AuditConfirmationLate); got != 2 {
		t.Errorf("finished request: %d late confirmations audited, want 2", got)
	}
	if got := s.auditCount(ctx, ghostRequest, lethe.AuditConfirmationLate); got != 1 {
		t.Errorf("unknown request: %d late confirmations audited, want 1", got)
	}
	st := s.Relay.Stats()
	if st.DeadLettered != int64(len(malformed)) || st.Late != 3 {
		t.Errorf("relay stats: %d dead-lettered, %d late; want %d and 3", st.DeadLettered, st.Late, len(malformed))
	}
	var dlq int64
	for _, p := range s.Kafka.PartitionInfos(wire.DLQTopic(wire.ConfirmationsTopic)) {
		dlq += p.HighWatermark - p.LogStartOffset
	}
	if dlq != int64(len(malformed)) {
		t.Errorf("the dead-letter topic holds %d messages, want %d", dlq, len(malformed))
	}
}

func confirmationMessage(t *testing.T, c wire.Confirmation) kafka.Message {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: wire.ConfirmationsTopic, Key: []byte(c.RequestID), Value: b,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaConfirmation)}}}
}

// mutate returns the JSON object b with change applied.
func mutate(t *testing.T, b []byte, change func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// auditCount counts a request's audit events of one kind.
func (s *stack) auditCount(ctx context.Context, requestID string, kind lethe.AuditKind) int {
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND kind = $2`,
		requestID, kind).Scan(&n); err != nil && ctx.Err() == nil {
		s.t.Errorf("count audit of %s: %v", requestID, err)
	}
	return n
}

// auditDetailCount counts a request's audit events of one kind and detail.
func (s *stack) auditDetailCount(ctx context.Context, requestID string, kind lethe.AuditKind, detail string) int {
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND kind = $2 AND detail = $3`,
		requestID, kind, detail).Scan(&n); err != nil && ctx.Err() == nil {
		s.t.Errorf("count audit of %s: %v", requestID, err)
	}
	return n
}
