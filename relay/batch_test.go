package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"go.temporal.io/api/serviceerror"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// signalBound is what one signal may carry: the relay's 512 KiB of
// confirmations, and the commas and braces around them.
const signalBound = 512<<10 + 1<<10

// batchConfirmation answers n subjects of chunk batchID for system, the
// first with a derived identifier value that must never be logged.
func batchConfirmation(batchID, system string, n int) wire.BatchConfirmation {
	c := wire.BatchConfirmation{
		Schema:      wire.SchemaBatchConfirmation,
		CommandID:   uuid.NewString(),
		BatchID:     batchID,
		System:      system,
		ConfirmedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	for i := range n {
		it := wire.ItemOutcome{ItemID: uuid.NewString(), Outcome: wire.OutcomeErased, Records: int64(i + 1)}
		if i == 0 {
			it.DerivedIdentifiers = []wire.Identifier{{Type: "stripe_customer_id", Value: secret}}
		}
		c.Items = append(c.Items, it)
	}
	return c
}

func encodeBatch(t *testing.T, cs ...wire.BatchConfirmation) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for _, c := range cs {
		m, err := connectors.EncodeBatchConfirmation(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// sameJSON reports whether got and want encode alike.
func sameJSON(t *testing.T, got, want any) bool {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(g, w)
}

// batchSignals returns the batch confirmations signaled to workflowID, in
// the order signaled, and checks each signal's name, run and size.
func batchSignals(t *testing.T, s *signaler, workflowID string) []wire.BatchConfirmation {
	t.Helper()
	var out []wire.BatchConfirmation
	for _, c := range s.calls() {
		if c.workflowID != workflowID || c.signal != workflows.SignalBatchConfirm {
			continue
		}
		if c.runID != "" {
			t.Errorf("batch signal to run %q, want the current run", c.runID)
		}
		if b, _ := json.Marshal(c.batch); len(b) > signalBound {
			t.Errorf("a batch signal of %d bytes, want at most %d", len(b), signalBound)
		}
		out = append(out, c.batch.Confirmations...)
	}
	return out
}

// TestRelaySignalsBatchConfirmations: batch confirmations go to their
// chunk's workflow with SignalBatchConfirm, coalesced per chunk in the
// order read, whether the schema header or, without it, the body's schema
// says what they are.
func TestRelaySignalsBatchConfirmations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	chunk, other := uuid.NewString(), uuid.NewString()
	a, b, c := batchConfirmation(chunk, "orders", 3), batchConfirmation(chunk, "billing", 2), batchConfirmation(other, "orders", 1)
	msgs := encodeBatch(t, a, c, b)
	msgs[2].Headers = nil // b: only its body says it is a batch confirmation
	produce(ctx, t, brokers, msgs...)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	r := start(t, config(brokers, logs), s, &auditor{})
	eventually(ctx, t, "all items signaled", func() bool { return s.items() == 6 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	if calls := s.calls(); len(calls) != 2 {
		t.Errorf("got %d signals for 3 batch confirmations of 2 chunks, want 2", len(calls))
	}
	for _, want := range []struct {
		chunk string
		confs []wire.BatchConfirmation
	}{{chunk, []wire.BatchConfirmation{a, b}}, {other, []wire.BatchConfirmation{c}}} {
		if got := batchSignals(t, s, workflows.ErasureWorkflowID(want.chunk)); !sameJSON(t, got, want.confs) {
			t.Errorf("chunk %s: signaled %+v, want %+v in the order read", want.chunk, got, want.confs)
		}
	}
	if st := r.Stats(); st.Signals != 2 || st.BatchConfirmations != 3 || st.Confirmations != 0 || st.DeadLettered != 0 || st.Late != 0 {
		t.Errorf("stats = %+v, want 2 signals carrying 3 batch confirmations", st)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged a derived identifier value:\n%s", logs)
	}
}

// TestRelayForwardsSplitBatchAnswer: one batch command answered in
// several messages (wire.PackBatchConfirmations) reaches its workflow
// whole, in order, under its one command id, in signals the relay keeps
// within their bound although each message is larger.
func TestRelayForwardsSplitBatchAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	chunk := uuid.NewString()
	tmpl := batchConfirmation(chunk, "orders", 0)
	var items []wire.ItemOutcome
	for i := range 1500 {
		items = append(items, wire.ItemOutcome{ItemID: uuid.NewString(), Outcome: wire.OutcomeRetained,
			Detail: fmt.Sprintf("%04d legal hold ", i) + strings.Repeat("x", 2000)})
	}
	parts, err := wire.PackBatchConfirmations(tmpl, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 3 {
		t.Fatalf("PackBatchConfirmations made %d messages, want at least 3 for this test", len(parts))
	}
	produce(ctx, t, brokers, encodeBatch(t, parts...)...)

	s := &signaler{}
	r := start(t, config(brokers, &testenv.LogBuffer{}), s, &auditor{})
	eventually(ctx, t, "all items signaled", func() bool { return s.items() == len(items) })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	got := batchSignals(t, s, workflows.ErasureWorkflowID(chunk))
	var gotItems []wire.ItemOutcome
	for _, c := range got {
		if c.CommandID != tmpl.CommandID || c.BatchID != chunk || c.System != "orders" || !c.ConfirmedAt.Equal(tmpl.ConfirmedAt) {
			t.Errorf("signaled confirmation of command %s, batch %s, system %s at %v; want the answer's %s, %s, orders at %v",
				c.CommandID, c.BatchID, c.System, c.ConfirmedAt, tmpl.CommandID, chunk, tmpl.ConfirmedAt)
		}
		gotItems = append(gotItems, c.Items...)
	}
	if !sameJSON(t, gotItems, items) {
		t.Errorf("signaled %d items, want the answer's %d complete and in order", len(gotItems), len(items))
	}
	if st := r.Stats(); st.Signals < int64(len(parts)) || st.BatchConfirmations < int64(len(parts)) {
		t.Errorf("stats = %+v, want at least %d signals and batch confirmations for %d messages of about 1 MiB", st, len(parts), len(parts))
	}
}

// TestRelaySplitsBatchConfirmationItsSignalCannotCarry: a batch
// confirmation whose details a connector wrote with bare characters that
// JSON encoders escape grows several times once encoded for Temporal,
// past what one payload may hold. The relay splits it by its items
// instead of retrying a signal that can never be accepted.
func TestRelaySplitsBatchConfirmationItsSignalCannotCarry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	chunk := uuid.NewString()
	c := batchConfirmation(chunk, "orders", 200)
	for i := range c.Items {
		c.Items[i].Outcome, c.Items[i].Records, c.Items[i].DerivedIdentifiers = wire.OutcomeRetained, 0, nil
		c.Items[i].Detail = strings.Repeat("<", 4000)
	}
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		t.Fatal(err)
	}
	value := bytes.TrimSpace(raw.Bytes())
	if escaped, _ := json.Marshal(c); len(value) > wire.MaxMessageBytes || len(escaped) < 2<<20 {
		t.Fatalf("message of %d bytes, %d encoded again: want at most %d, and more than Temporal's 2 MiB",
			len(value), len(escaped), wire.MaxMessageBytes)
	}
	produce(ctx, t, brokers, kafka.Message{Topic: topic, Key: []byte(chunk), Value: value})

	s := &signaler{}
	start(t, config(brokers, &testenv.LogBuffer{}), s, &auditor{})
	eventually(ctx, t, "all items signaled", func() bool { return s.items() == len(c.Items) })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	got := batchSignals(t, s, workflows.ErasureWorkflowID(chunk))
	if len(got) < 2 {
		t.Errorf("signaled %d parts, want the confirmation split", len(got))
	}
	var gotItems []wire.ItemOutcome
	for _, p := range got {
		if p.CommandID != c.CommandID {
			t.Errorf("a part of command %s, want %s", p.CommandID, c.CommandID)
		}
		gotItems = append(gotItems, p.Items...)
	}
	if !sameJSON(t, gotItems, c.Items) {
		t.Errorf("signaled %d items, want the confirmation's %d in order", len(gotItems), len(c.Items))
	}
}

// TestRelayMixesSingleAndBatchConfirmations: one fetch holding single and
// batch confirmations of one chunk, and a request's, gives each workflow
// one signal per kind, each kind in the order read; the fetch is committed
// only once every signal was accepted, here after the batch signal was
// refused twice.
func TestRelayMixesSingleAndBatchConfirmations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	chunk, req := uuid.NewString(), uuid.NewString()
	singles := []wire.Confirmation{confirmation(chunk, "legacy"), confirmation(chunk, "crm")}
	batches := []wire.BatchConfirmation{batchConfirmation(chunk, "orders", 2), batchConfirmation(chunk, "billing", 3)}
	lone := confirmation(req, "orders")
	var msgs []kafka.Message
	msgs = append(msgs, encode(t, singles[0])...)
	msgs = append(msgs, encodeBatch(t, batches[0])...)
	msgs = append(msgs, encode(t, lone, singles[1])...)
	msgs = append(msgs, encodeBatch(t, batches[1])...)
	produce(ctx, t, brokers, msgs...)

	var committedEarly bool
	s := &signaler{}
	s.fail = func(c call) error {
		if committed(cluster, topic) {
			committedEarly = true
		}
		if c.signal == workflows.SignalBatchConfirm && s.refused < 2 {
			return serviceerror.NewUnavailable("history service is restarting")
		}
		return nil
	}
	r := start(t, config(brokers, &testenv.LogBuffer{}), s, &auditor{})
	eventually(ctx, t, "everything signaled", func() bool { return s.confirmations() == 3 && s.items() == 5 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	s.mu.Lock()
	refused, early := s.refused, committedEarly
	s.mu.Unlock()
	if refused != 2 || early {
		t.Errorf("batch signal refused %d times, committed before it was accepted: %v; want 2 refusals and no early commit", refused, early)
	}
	bySignal := map[string][]string{}
	for _, c := range s.calls() {
		for _, conf := range c.arg.Confirmations {
			bySignal[c.workflowID+" "+c.signal] = append(bySignal[c.workflowID+" "+c.signal], conf.CommandID)
		}
		for _, conf := range c.batch.Confirmations {
			bySignal[c.workflowID+" "+c.signal] = append(bySignal[c.workflowID+" "+c.signal], conf.CommandID)
		}
	}
	want := map[string][]string{
		workflows.ErasureWorkflowID(chunk) + " " + workflows.SignalConfirm:      {singles[0].CommandID, singles[1].CommandID},
		workflows.ErasureWorkflowID(chunk) + " " + workflows.SignalBatchConfirm: {batches[0].CommandID, batches[1].CommandID},
		workflows.ErasureWorkflowID(req) + " " + workflows.SignalConfirm:        {lone.CommandID},
	}
	if fmt.Sprint(bySignal) != fmt.Sprint(want) {
		t.Errorf("signaled %v, want %v", bySignal, want)
	}
	if st := r.Stats(); st.Signals != 3 || st.Confirmations != 3 || st.BatchConfirmations != 2 {
		t.Errorf("stats = %+v, want 3 signals carrying 3 confirmations and 2 batch confirmations", st)
	}
}

// TestRelayDeadLettersMalformedBatchConfirmations: a batch confirmation
// that breaks the contract, or a message whose schema names neither kind,
// is dead-lettered with its reason, which names fields, never content.
func TestRelayDeadLettersMalformedBatchConfirmations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	chunk := uuid.NewString()
	empty := batchConfirmation(chunk, "orders", 1)
	empty.Items = nil
	badItem := batchConfirmation(chunk, "orders", 2)
	badItem.Items[1].ItemID = secret
	command := batchConfirmation(chunk, "orders", 1)
	command.Schema = wire.SchemaBatchCommand // a command on the confirmations topic, without a header
	good := batchConfirmation(chunk, "billing", 1)
	msgs := encodeBatch(t, empty, badItem, command, good)
	msgs[2].Headers = nil
	wrongHeader := encodeBatch(t, batchConfirmation(chunk, "crm", 1))[0]
	wrongHeader.Headers = []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaConfirmation)}}
	produce(ctx, t, brokers, append(msgs[:3:3], wrongHeader, msgs[3])...)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	r := start(t, config(brokers, logs), s, &auditor{})
	eventually(ctx, t, "good batch confirmation signaled", func() bool { return s.items() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })
	if got := batchSignals(t, s, workflows.ErasureWorkflowID(chunk)); len(got) != 1 || got[0].CommandID != good.CommandID {
		t.Errorf("signaled %+v, want only the good batch confirmation %s", got, good.CommandID)
	}

	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "test-dlq", Topic: wire.DLQTopic(topic), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer dlq.Close()
	for _, want := range []struct {
		original kafka.Message
		reason   string
	}{
		{msgs[0], "malformed message: items is empty"},
		{msgs[1], "malformed message: items[1].item_id is not a UUID"},
		{msgs[2], fmt.Sprintf("malformed message: schema is neither %q nor %q", wire.SchemaConfirmation, wire.SchemaBatchConfirmation)},
		{wrongHeader, fmt.Sprintf("malformed message: schema is not %q", wire.SchemaConfirmation)},
	} {
		m, err := dlq.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letter: %v", err)
		}
		if !bytes.Equal(m.Value, want.original.Value) {
			t.Errorf("dead letter %q, want the original %q", m.Value, want.original.Value)
		}
		if reason, _ := connectors.Header(m, wire.HeaderDLQReason); reason != want.reason {
			t.Errorf("reason = %q, want %q", reason, want.reason)
		}
	}
	if st := r.Stats(); st.DeadLettered != 4 || st.Signals != 1 || st.BatchConfirmations != 1 {
		t.Errorf("stats = %+v, want 4 dead-lettered and 1 signal carrying 1 batch confirmation", st)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged message content:\n%s", logs)
	}
}

// TestRelayAuditsLateBatchConfirmations: batch confirmations whose chunk's
// workflow is gone are audited as late under the chunk, one event each,
// with their item count and no identifier value.
func TestRelayAuditsLateBatchConfirmations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	gone, live := uuid.NewString(), uuid.NewString()
	late := []wire.BatchConfirmation{batchConfirmation(gone, "orders", 3), batchConfirmation(gone, "billing", 2)}
	produce(ctx, t, brokers, encodeBatch(t, late[0], batchConfirmation(live, "orders", 1), late[1])...)

	s := &signaler{fail: func(c call) error {
		if c.workflowID == workflows.ErasureWorkflowID(gone) {
			return serviceerror.NewNotFound("workflow execution already completed")
		}
		return nil
	}}
	a := &auditor{failures: 1}
	r := start(t, config(brokers, &testenv.LogBuffer{}), s, a)
	eventually(ctx, t, "late batch confirmations audited", func() bool { return len(a.all()) == 2 })
	eventually(ctx, t, "live batch confirmation signaled", func() bool { return s.items() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	for i, e := range a.all() {
		detail := fmt.Sprintf("no running workflow: batch confirmation of %d items", len(late[i].Items))
		if e.RequestID != gone || e.System != late[i].System || e.Kind != lethe.AuditConfirmationLate || e.Detail != detail || e.At.IsZero() {
			t.Errorf("audit event %d = %+v, want confirmation_late of %s/%s with detail %q", i, e, gone, late[i].System, detail)
		}
		if strings.Contains(fmt.Sprint(e), secret) || strings.Contains(fmt.Sprint(e), late[i].Items[0].ItemID) {
			t.Errorf("audit event %d names an identifier or an item: %+v", i, e)
		}
	}
	if st := r.Stats(); st.Late != 2 || st.Signals != 1 || st.BatchConfirmations != 1 {
		t.Errorf("stats = %+v, want 2 late and 1 signal carrying 1 batch confirmation", st)
	}
}

// chunkLedger is the registry whose ErasureRecorded also knows some chunk
// ids, as the relay asks it about a batch confirmation's batch_id.
type chunkLedger struct {
	*registry.Store
	chunks map[string]bool
}

func (l chunkLedger) ErasureRecorded(ctx context.Context, id string) (bool, error) {
	if l.chunks[id] {
		return true, nil
	}
	return l.Store.ErasureRecorded(ctx, id)
}

// TestRelayChecksBatchSignatures: batch confirmations of a system with a
// credential count only when signed with its key; forged and unsigned
// ones are dead-lettered as bad_signature and audited under their chunk
// when it is known, as single ones are under their request. A system never
// issued a credential still works unsigned.
func TestRelayChecksBatchSignatures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	for _, name := range []string{"orders", "legacy"} {
		if _, _, err := store.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"user_id"}}, registry.SystemWrite{Actor: "token:ops"}); err != nil {
			t.Fatal(err)
		}
	}
	master, err := credential.New(bytes.Repeat([]byte{3}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.IssueCredential(ctx, "orders", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chunk, unknown := uuid.NewString(), uuid.NewString()

	good := signed(encodeBatch(t, batchConfirmation(chunk, "orders", 2))[0], key, master.Secret(key))
	unsigned := encodeBatch(t, batchConfirmation(chunk, "orders", 2))[0]
	forged := signed(encodeBatch(t, batchConfirmation(chunk, "orders", 2))[0], key, master.Secret(key))
	forged.Value = bytes.Replace(forged.Value, []byte(`"records":2`), []byte(`"records":3`), 1)
	stranger := encodeBatch(t, batchConfirmation(unknown, "orders", 1))[0]
	legacy := encodeBatch(t, batchConfirmation(chunk, "legacy", 1))[0]
	produce(ctx, t, brokers, unsigned, forged, good, stranger, legacy)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	cfg := config(brokers, logs)
	cfg.Credentials, cfg.SystemKey = chunkLedger{Store: store, chunks: map[string]bool{chunk: true}}, master
	r := start(t, cfg, s, store)
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })
	eventually(ctx, t, "refusals counted", func() bool { return r.Stats().BadSignatures == 3 })

	var signaled []string
	for _, c := range batchSignals(t, s, workflows.ErasureWorkflowID(chunk)) {
		signaled = append(signaled, c.System+"/"+c.CommandID)
	}
	goodConf, _ := wire.DecodeBatchConfirmation(good.Value)
	legacyConf, _ := wire.DecodeBatchConfirmation(legacy.Value)
	if want := []string{"orders/" + goodConf.CommandID, "legacy/" + legacyConf.CommandID}; !slices.Equal(signaled, want) {
		t.Errorf("signaled %v, want only the well-signed and the legacy batch confirmation %v", signaled, want)
	}
	if st := r.Stats(); st.BatchConfirmations != 2 || st.DeadLettered != 0 {
		t.Errorf("stats = %+v, want 2 batch confirmations signaled and none malformed", st)
	}

	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "test-dlq", Topic: wire.DLQTopic(topic), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer dlq.Close()
	pending := map[string]bool{string(unsigned.Value): true, string(forged.Value): true, string(stranger.Value): true}
	for range 3 {
		m, err := dlq.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letter: %v", err)
		}
		if !pending[string(m.Value)] {
			t.Errorf("dead letter %q is none of the refused batch confirmations, or came twice", m.Value)
		}
		delete(pending, string(m.Value))
		if reason, _ := connectors.Header(m, wire.HeaderDLQReason); reason != relay.DLQBadSignature {
			t.Errorf("dead-letter reason = %q, want %s", reason, relay.DLQBadSignature)
		}
	}

	rows, err := db.QueryContext(ctx, `SELECT coalesce(request_id::text, ''), system, detail
		FROM audit_events WHERE kind = 'bad_signature' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var req, system, detail string
		if err := rows.Scan(&req, &system, &detail); err != nil {
			t.Fatal(err)
		}
		got = append(got, req+"|"+system+"|"+detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	wantAudit := []string{
		chunk + "|orders|unsigned: no single lethe-key-id and lethe-signature header",
		chunk + "|orders|signature does not match the value under key " + key,
		"|orders|unsigned: no single lethe-key-id and lethe-signature header",
	}
	slices.Sort(wantAudit)
	if !slices.Equal(got, wantAudit) {
		t.Errorf("bad_signature audit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantAudit, "\n"))
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged a derived identifier value:\n%s", logs)
	}
}
