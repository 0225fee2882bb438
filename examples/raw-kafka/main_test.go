package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// trace is what the fakes saw, in order: "fetch N", "write TOPIC", "commit N".
type trace struct {
	mu     sync.Mutex
	events []string
}

func (l *trace) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// fakeReader hands out msgs, then blocks until ctx ends.
type fakeReader struct {
	log  *trace
	msgs []kafka.Message
	// committed is the highest offset committed, -1 before any.
	committed int64
}

func (r *fakeReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	if len(r.msgs) == 0 {
		<-ctx.Done()
		return kafka.Message{}, ctx.Err()
	}
	m := r.msgs[0]
	r.msgs = r.msgs[1:]
	r.log.add("fetch " + string(rune('0'+m.Offset)))
	return m, nil
}

func (r *fakeReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	for _, m := range msgs {
		r.committed = max(r.committed, m.Offset)
		r.log.add("commit " + string(rune('0'+m.Offset)))
	}
	return nil
}

// fakeWriter refuses its first failures writes, then takes every one.
type fakeWriter struct {
	log      *trace
	failures int
	written  []kafka.Message
	done     func(n int)
}

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	if w.failures > 0 {
		w.failures--
		w.log.add("refused " + msgs[0].Topic)
		return errors.New("broker unavailable")
	}
	w.written = append(w.written, msgs...)
	w.log.add("write " + msgs[0].Topic)
	w.done(len(w.written))
	return nil
}

func commandMessage(t *testing.T, offset int64, id string) kafka.Message {
	t.Helper()
	b, err := json.Marshal(map[string]any{"schema": "erasure.command.v1", "command_id": id,
		"request_id": "6f1c0000-0000-4000-8000-000000000001", "system": system, "attempt": 1,
		"identifiers": []map[string]string{{"type": "email", "value": "ada@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: "lethe.erasure." + system, Offset: offset, Value: b}
}

// TestAFailedConfirmationIsNeverCommittedPast: the confirmation of the
// first command is refused twice; the example tries it again and commits
// it before it even fetches the second command, so that no commit can skip
// the first.
func TestAFailedConfirmationIsNeverCommittedPast(t *testing.T) {
	l := &trace{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &fakeReader{log: l, committed: -1, msgs: []kafka.Message{
		commandMessage(t, 1, "0b5c0000-0000-4000-8000-000000000001"),
		{Topic: "lethe.erasure." + system, Offset: 2, Value: []byte("not json")},
		commandMessage(t, 3, "0b5c0000-0000-4000-8000-000000000003"),
	}}
	w := &fakeWriter{log: l, failures: 2, done: func(n int) {
		if n == 3 {
			go func() { time.Sleep(10 * time.Millisecond); cancel() }()
		}
	}}
	run(ctx, r, w, time.Millisecond)
	want := []string{
		"fetch 1", "refused lethe.erasure.confirmations", "refused lethe.erasure.confirmations",
		"write lethe.erasure.confirmations", "commit 1",
		"fetch 2", "write lethe.erasure." + system + ".dlq", "commit 2",
		"fetch 3", "write lethe.erasure.confirmations", "commit 3",
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) != len(want) {
		t.Fatalf("events = %q, want %q", l.events, want)
	}
	for i := range want {
		if l.events[i] != want[i] {
			t.Fatalf("event %d = %q, want %q (all: %q)", i, l.events[i], want[i], l.events)
		}
	}
	var conf confirmation
	if err := json.Unmarshal(w.written[0].Value, &conf); err != nil || conf.CommandID != "0b5c0000-0000-4000-8000-000000000001" || conf.Outcome != "not_found" {
		t.Errorf("first confirmation = %+v, %v", conf, err)
	}
}
