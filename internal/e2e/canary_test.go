package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// The canary subject: its user_id and email (what the request names)
// carry the marker; its device_id, which the accounts system reveals as a
// derived identifier, has a marker of its own, because the contract puts
// derived identifiers on the confirmations topic.
const (
	canaryMarker = "7f3a9d-zebra-quokka"
	deviceMarker = "c4n4ry-device-9e1b"
)

var canarySubject = demo.Subject{
	UserID:   "u-" + canaryMarker,
	Email:    canaryMarker + "@example.org",
	DeviceID: "dev-" + deviceMarker,
}

// TestCanaryNeverAtRest runs a full request with the demo services for a
// subject with distinctive values, with payload encryption on as in
// production, and then reads everything Lethe keeps: the Temporal history
// through a client without the codec key, every table of the database,
// every Kafka topic but the three command topics, the logs and the API's
// answers. The values appear in none of them.
func TestCanaryNeverAtRest(t *testing.T) {
	keys := newKeyring(t)
	s := newStack(t, stackOptions{Codec: keys})
	if err := demo.Migrate(s.ctx, s.DB); err != nil {
		t.Fatal(err)
	}
	if _, err := demo.SeedSubject(s.ctx, s.DB, canarySubject); err != nil {
		t.Fatal(err)
	}
	for _, sys := range demo.Systems() {
		s.putSystem(sys)
	}
	for name, h := range demo.Handlers(s.DB) {
		s.runConnector(name, h)
	}

	// A hold placed and lifted for the subject, so holds' tables and audit
	// are part of what is searched.
	hold := map[string]any{"subject": map[string]string{"email": canarySubject.Email}, "basis": "Art. 17(3)(e)", "system": "nobody"}
	if res := s.do(http.MethodPut, "/v1/holds/canary-case", hold); res.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", res.Status, res.Body)
	}
	if res := s.do(http.MethodDelete, "/v1/holds/canary-case", nil); res.Status != http.StatusOK {
		t.Fatalf("DELETE hold = %d %s", res.Status, res.Body)
	}
	e := s.submit(subjectMap(canarySubject.Identifiers()), "Idempotency-Key", "key-"+canaryMarker)
	done := s.await(e.ID, 90*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("status = %s, want completed: %+v", done.Status, done.Systems)
	}
	for _, sys := range demo.Systems() {
		if n := remaining(t, s, sys.Name, canarySubject.AllIdentifiers()); n != 0 {
			t.Errorf("%s still holds %d rows of the subject: the run did not erase", sys.Name, n)
		}
	}
	s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil)
	s.do(http.MethodGet, "/v1/erasures", nil)
	s.do(http.MethodGet, "/v1/holds?all=true", nil)

	markers := []string{canaryMarker, deviceMarker}
	t.Run("temporal history without the key", func(t *testing.T) {
		events := history(t, s, workflows.ErasureWorkflowID(e.ID))
		if len(events) < 5 {
			t.Fatalf("history has %d events: the scan would look at nothing", len(events))
		}
		for i, ev := range events {
			raw, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range markers {
				if bytes.Contains(raw, []byte(m)) {
					t.Errorf("history event %d (%s) holds a canary value", i, ev.GetEventType())
				}
			}
		}
		// The scan is only worth something if the history does hold the
		// values, encrypted: the start event, decrypted with the key,
		// names the subject.
		input := events[0].GetWorkflowExecutionStartedEventAttributes().GetInput()
		if enc := string(input.GetPayloads()[0].GetMetadata()["encoding"]); enc != "binary/encrypted" {
			t.Fatalf("the workflow input is stored as %q, not encrypted", enc)
		}
		plain, err := codec.NewCodec(keys).Decode(input.GetPayloads())
		if err != nil {
			t.Fatalf("decode the input with the key: %v", err)
		}
		if !bytes.Contains(plain[0].GetData(), []byte(canaryMarker)) {
			t.Error("the decrypted input lacks the canary: the scan looked at the wrong workflow")
		}
		if sa := events[0].GetWorkflowExecutionStartedEventAttributes().GetSearchAttributes(); len(sa.GetIndexedFields()) == 0 {
			t.Error("the start event carries no search attributes: the scan missed them")
		}
	})

	t.Run("every database table", func(t *testing.T) {
		tables := allTables(t, s)
		digestFound := false
		for _, table := range tables {
			var dump string
			q := fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %s t`, table)
			if err := s.DB.QueryRowContext(s.ctx, q).Scan(&dump); err != nil {
				t.Fatal(err)
			}
			for _, m := range markers {
				if strings.Contains(dump, m) {
					t.Errorf("table %s holds a canary value", table)
				}
			}
			digestFound = digestFound || strings.Contains(dump, s.Digester.Sum("email", canarySubject.Email))
		}
		if !digestFound || !slices.Contains(tables, "public.legal_hold_subjects") || !slices.Contains(tables, "demo_accounts.accounts") {
			t.Errorf("tables %v: the subject's digest found %v; the scan missed Lethe's or the demo's tables", tables, digestFound)
		}
	})

	t.Run("every kafka topic but the command topics", func(t *testing.T) {
		commandTopics := map[string]bool{}
		for _, sys := range demo.Systems() {
			commandTopics[wire.DefaultTopic(sys.Name)] = true
		}
		read := 0
		for topic, msgs := range allMessages(t, s) {
			if commandTopics[topic] {
				continue
			}
			for _, m := range msgs {
				read++
				var b bytes.Buffer
				b.Write(m.Key)
				b.Write(m.Value)
				for _, h := range m.Headers {
					b.WriteString(h.Key)
					b.Write(h.Value)
				}
				if bytes.Contains(b.Bytes(), []byte(canaryMarker)) {
					t.Errorf("topic %s offset %d holds the canary", topic, m.Offset)
				}
				// Derived identifiers ride on the confirmations by contract
				// (docs/compliance.md); everywhere else they must not.
				if topic != wire.ConfirmationsTopic && bytes.Contains(b.Bytes(), []byte(deviceMarker)) {
					t.Errorf("topic %s offset %d holds the derived identifier", topic, m.Offset)
				}
			}
		}
		if read == 0 {
			t.Error("no message outside the command topics was read: the scan proves nothing")
		}
	})

	t.Run("logs and answers", func(t *testing.T) {
		logs := s.Logs.String()
		if logs == "" {
			t.Fatal("no log line was written: the scan proves nothing")
		}
		for _, m := range markers {
			if strings.Contains(logs, m) {
				t.Error("the logs hold a canary value")
			}
			if strings.Contains(s.Responses.String(), m) {
				t.Error("an API answer holds a canary value")
			}
		}
	})
}

// history reads every event of a workflow's runs through the stack's client
// without the codec.
func history(t *testing.T, s *stack, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	it := s.Temporal.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var out []*historypb.HistoryEvent
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("read history: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// allTables names every table outside PostgreSQL's own schemas, qualified.
func allTables(t *testing.T, s *stack) []string {
	t.Helper()
	return tables(t, s, `table_schema NOT IN ('pg_catalog', 'information_schema')`, `table_schema || '.' || table_name`)
}

// allMessages reads every message of every topic of the broker.
func allMessages(t *testing.T, s *stack) map[string][]kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	dialer := s.KafkaAdmin.Dialer()
	conn, err := dialer.DialContext(ctx, "tcp", s.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]kafka.Message{}
	for _, p := range parts {
		lc, err := dialer.DialLeader(ctx, "tcp", s.Brokers[0], p.Topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lc.Seek(first, kafka.SeekAbsolute); err != nil {
			t.Fatal(err)
		}
		for off := first; off < last; {
			lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := lc.ReadBatch(1, 10<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("read %s/%d: %v", p.Topic, p.ID, err)
					}
					break
				}
				out[p.Topic] = append(out[p.Topic], m)
				off = m.Offset + 1
			}
			batch.Close()
		}
		lc.Close()
	}
	return out
}
