package faults_test

import (
	"testing"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/lethe-dev/lethe"
)

// TestWorkerKilledMidFanOut kills `lethe worker` with SIGKILL twice, each
// time at the worst moment, and checks that a third worker finishes every
// request exactly once.
//
// Each worker reaches Temporal through a proxy that the test freezes: the
// worker still receives the workflow tasks it had polled for and runs them
// (planning, publishing commands, writing the ledger) but can never report
// the result, exactly like a process that dies between its side effects and
// Temporal recording them. The first worker is frozen before the requests
// arrive and killed once it has published commands for a fan-out Temporal
// never heard of; the second is frozen once every command went out, killed
// once it has finished requests in the ledger that Temporal still thinks
// are running. Temporal hands their tasks to the next worker, which runs
// them again: the commands it publishes again must be the same commands,
// the ledger it writes again must not record anything twice.
func TestWorkerKilledMidFanOut(t *testing.T) {
	// Built before anything runs, so that compiling does not eat the
	// test's time or starve its stack.
	letheBinary(t)
	s := newStack(t, stackOptions{Relay: true})
	ctx, cancel := s.deadline()
	defer cancel()
	fast := []*service{newService("fast-a", false), newService("fast-b", false)}
	held := []*service{newService("held-a", true), newService("held-b", true)}
	var systems []string
	for _, svc := range append(append([]*service{}, fast...), held...) {
		s.putSystem(svc)
		systems = append(systems, svc.name)
	}

	// First worker: frozen before any request exists, so the first
	// workflow tasks it gets are fan-outs it can never report.
	pa := startProxy(t, s.Temporal.Address())
	a := startProcess(t, "worker", s.env(pa.Addr()))
	a.awaitPolling(ctx, s.Client)
	pa.Freeze()
	const n = 6
	var reqs []lethe.Erasure
	for i := range n {
		reqs = append(reqs, s.submit(subject("kill", i)))
	}
	eventually(t, ctx, "the frozen worker's fan-out reached every system", func() bool {
		for _, svc := range fast {
			if svc.seen() == 0 {
				return false
			}
		}
		for _, svc := range held {
			if s.published(svc.name) == 0 {
				return false
			}
		}
		return true
	})
	publishedByA := fast[0].seen()
	a.kill()
	t.Logf("worker A published the commands of %d requests, then died of SIGKILL", publishedByA)

	// Second worker: it takes the first one's tasks over, fans every
	// request out and takes the fast confirmations in; then it is frozen,
	// the held systems confirm, and it finishes requests it cannot report.
	pb := startProxy(t, s.Temporal.Address())
	b := startProcess(t, "worker", s.env(pb.Addr()))
	b.awaitPolling(ctx, s.Client)
	// The fast systems' confirmations in the ledger mean that every
	// request was fanned out to every system.
	eventually(t, ctx, "the ledger shows every fast system erased", func() bool {
		for _, e := range reqs {
			got, err := s.Store.GetErasure(ctx, e.ID)
			if err != nil {
				return false
			}
			erased := 0
			for _, p := range got.Systems {
				if p.Status == lethe.SystemErased {
					erased++
				}
			}
			if erased < len(fast) {
				return false
			}
		}
		return true
	})
	pb.Freeze()
	for _, svc := range held {
		s.release(svc)
	}
	eventually(t, ctx, "the frozen worker finished a request in the ledger", func() bool {
		return s.countFinal(ctx, ids(reqs)) > 0
	})
	finishedByB := s.countFinal(ctx, ids(reqs))
	b.kill()
	t.Logf("worker B finished %d requests in the ledger unbeknown to Temporal, then died of SIGKILL", finishedByB)

	// Third worker: it redoes what the dead ones never reported.
	startProcess(t, "worker", s.env(s.Temporal.Address())).awaitLog(ctx, "worker polling")
	s.awaitFinal(ctx, ids(reqs)...)
	s.verify(ctx, expectCompleted(reqs, systems...)...)
	// Temporal saw it too: the tasks of both dead workers timed out.
	timedOut := 0
	for _, e := range reqs {
		timedOut += s.historyCount(ctx, e.ID, enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)
	}
	if timedOut < 2 {
		t.Errorf("%d workflow tasks timed out, want at least one from each killed worker", timedOut)
	}
}
