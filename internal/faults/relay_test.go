package faults_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestRelayKilledBeforeCommit kills `lethe relay` with SIGKILL after it
// signalled confirmations to their workflows but before it committed their
// offsets, so that the next relay delivers the same confirmations again.
//
// The broker refuses the relay group's offset commits, which holds the first
// relay in exactly that window for as long as the test needs: its signals
// are in the workflows' histories while the group has no committed offset.
// The second relay reads the same confirmations and signals them again to
// workflows still waiting for another system: the duplicates must be seen in
// the histories and counted for nothing (one confirmed event, one attempt,
// the real record count).
func TestRelayKilledBeforeCommit(t *testing.T) {
	// Built before anything runs, so that compiling does not eat the
	// test's time or starve its stack.
	letheBinary(t)
	s := newStack(t, stackOptions{Worker: true})
	ctx, cancel := s.deadline()
	defer cancel()
	early, late := newService("early", false), newService("late", true)
	s.putSystem(early)
	s.putSystem(late)

	const n = 4
	var reqs []lethe.Erasure
	for i := range n {
		reqs = append(reqs, s.submit(subject("relay", i)))
	}
	eventually(t, ctx, "every early confirmation waits on Kafka", func() bool {
		return s.published(wire.ConfirmationsTopic) >= n
	})

	refused := s.Kafka.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: relay.DefaultGroupID, Count: -1})
	a := startProcess(t, "relay", s.env(s.Temporal.Address()))
	// The relay commits a batch once all its signals were accepted: a
	// refused commit means those signals are in the workflows' histories.
	eventually(t, ctx, "relay A signalled a batch and tried to commit it", func() bool { return refused.Hits() > 0 })
	var signalled []lethe.Erasure
	for _, e := range reqs {
		if s.signalsCarrying(ctx, e.ID, early.commandOf(e.ID)) > 0 {
			signalled = append(signalled, e)
		}
	}
	if len(signalled) == 0 {
		t.Fatal("relay A tried to commit without having signalled any confirmation")
	}
	if g := s.Kafka.GroupInfo(relay.DefaultGroupID); g == nil || len(g.Commits[wire.ConfirmationsTopic]) != 0 {
		t.Fatalf("the relay group committed offsets despite the refusal: %+v", g)
	}
	a.kill()
	refused.Remove()
	t.Logf("relay A signalled the confirmations of %d requests, had %d commits refused, then died of SIGKILL", len(signalled), refused.Hits())

	startProcess(t, "relay", s.env(s.Temporal.Address())).awaitLog(ctx, "relay started")
	for _, e := range signalled {
		cmd := early.commandOf(e.ID)
		eventually(t, ctx, "relay B delivered request "+e.ID+"'s early confirmation again", func() bool {
			return s.signalsCarrying(ctx, e.ID, cmd) >= 2
		})
	}
	eventually(t, ctx, "the ledger shows every early system erased", func() bool {
		for _, e := range reqs {
			if !s.systemIs(ctx, e.ID, early.name, lethe.SystemErased) {
				return false
			}
		}
		return true
	})
	s.release(late)
	s.awaitFinal(ctx, ids(reqs)...)
	s.verify(ctx, expectCompleted(reqs, early.name, late.name)...)
	eventually(t, ctx, "relay B committed its offsets", func() bool {
		g := s.Kafka.GroupInfo(relay.DefaultGroupID)
		return g != nil && len(g.Commits[wire.ConfirmationsTopic]) > 0
	})
}

// systemIs reports whether the ledger shows system in status st for a request.
func (s *stack) systemIs(ctx context.Context, requestID, system string, st lethe.SystemStatus) bool {
	var got lethe.SystemStatus
	err := s.DB.QueryRowContext(ctx, `SELECT status FROM erasure_systems WHERE request_id = $1 AND system = $2`,
		requestID, system).Scan(&got)
	return err == nil && got == st
}

// historyCount counts the events of one type in a request's workflow
// history.
func (s *stack) historyCount(ctx context.Context, requestID string, typ enumspb.EventType) int {
	it := s.Client.GetWorkflowHistory(ctx, workflows.ErasureWorkflowID(requestID), "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			s.t.Errorf("read the history of %s: %v", requestID, err)
			return n
		}
		if ev.GetEventType() == typ {
			n++
		}
	}
	return n
}

// signalsCarrying counts the confirm signals in a request's workflow history
// that carry a confirmation of commandID.
func (s *stack) signalsCarrying(ctx context.Context, requestID, commandID string) int {
	it := s.Client.GetWorkflowHistory(ctx, workflows.ErasureWorkflowID(requestID), "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	dc := converter.GetDefaultDataConverter()
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return 0
		}
		attrs := ev.GetWorkflowExecutionSignaledEventAttributes()
		if attrs == nil || attrs.GetSignalName() != workflows.SignalConfirm {
			continue
		}
		var sig workflows.ConfirmSignal
		if err := dc.FromPayloads(attrs.GetInput(), &sig); err != nil {
			s.t.Errorf("decode signal of %s: %v", requestID, err)
			return 0
		}
		for _, c := range sig.Confirmations {
			if c.CommandID == commandID {
				n++
				break
			}
		}
	}
	return n
}
