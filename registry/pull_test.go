package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// TestPullQueue follows one command through the pull queue: queued once
// however often the activity repeats, leased to one caller, offered again
// at a higher attempt after its lease and after the workflow dispatches it
// again, and gone once confirmed or once its request ends.
func TestPullQueue(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	for _, sys := range []lethe.System{
		{Name: "pulled", Identifiers: []string{"user_id"}, Mode: lethe.ModePull},
		{Name: "pushed", Identifiers: []string{"user_id"}},
	} {
		if _, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	modes, err := s.PullModes(ctx, []string{"pulled", "pushed", "ghost"})
	if err != nil || len(modes) != 1 || !modes["pulled"] {
		t.Fatalf("PullModes = %v, %v; want pulled only", modes, err)
	}

	e, _, err := s.CreateErasure(ctx, newErasure(t0), func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	cmd := registry.PullCommand{CommandID: "c-1", RequestID: e.ID, System: "pulled", Attempt: 1,
		IssuedAt: t0, ConfirmBy: t0.Add(time.Hour)}
	all := func(ctx context.Context, due []registry.PullCommand) ([]string, error) { return nil, nil }
	lease := func(want int) []registry.PullCommand {
		t.Helper()
		got, err := s.LeasePull(ctx, "pulled", 10, clk.Now(), time.Minute, all)
		if err != nil || len(got) != want {
			t.Fatalf("LeasePull = %+v, %v; want %d commands", got, err, want)
		}
		return got
	}

	for range 2 { // a retried activity queues it again: no change
		if err := s.EnqueuePull(ctx, []registry.PullCommand{cmd}); err != nil {
			t.Fatal(err)
		}
	}
	if got := lease(1); got[0].CommandID != "c-1" || got[0].Attempt != 1 || got[0].RequestID != e.ID {
		t.Fatalf("first lease = %+v", got[0])
	}
	lease(0) // leased: not offered again within its lease
	if counts, err := s.CountPullCommands(ctx); err != nil || counts["pulled"] != (registry.PullCounts{Leased: 1}) {
		t.Fatalf("CountPullCommands = %v, %v; want pulled with one leased", counts, err)
	}
	if err := s.EnqueuePull(ctx, []registry.PullCommand{cmd}); err != nil {
		t.Fatal(err)
	}
	lease(0) // the same workflow attempt queued again does not end the lease

	clk.Advance(time.Minute)
	if got := lease(1); got[0].Attempt != 2 {
		t.Fatalf("after the lease ran out: attempt %d, want 2", got[0].Attempt)
	}
	// The workflow dispatches again (its attempt 2): offered at once,
	// above every attempt offered before.
	again := cmd
	again.Attempt = 2
	if err := s.EnqueuePull(ctx, []registry.PullCommand{again}); err != nil {
		t.Fatal(err)
	}
	if got := lease(1); got[0].Attempt != 3 {
		t.Fatalf("after the workflow's re-dispatch: attempt %d, want 3", got[0].Attempt)
	}

	// A confirmation under another system or request touches nothing.
	found, err := s.FinishPull(ctx, []registry.PullKey{{CommandID: "c-1", RequestID: e.ID, System: "pushed"}})
	if err != nil || len(found) != 0 {
		t.Fatalf("FinishPull for another system = %v, %v; want nothing", found, err)
	}
	clk.Advance(time.Minute)
	lease(1)
	found, err = s.FinishPull(ctx, []registry.PullKey{{CommandID: "c-1", RequestID: e.ID, System: "pulled"}})
	if err != nil || len(found) != 1 {
		t.Fatalf("FinishPull = %v, %v; want the command", found, err)
	}
	clk.Advance(time.Minute)
	lease(0)

	// A command whose workflow no longer has it open leaves the queue.
	if err := s.EnqueuePull(ctx, []registry.PullCommand{{CommandID: "c-2", RequestID: e.ID, System: "pulled",
		Attempt: 1, IssuedAt: t0, ConfirmBy: t0.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LeasePull(ctx, "pulled", 10, clk.Now(), time.Minute,
		func(ctx context.Context, due []registry.PullCommand) ([]string, error) { return []string{"c-2"}, nil })
	if err != nil || len(got) != 0 {
		t.Fatalf("LeasePull dropping c-2 = %+v, %v; want none", got, err)
	}
	lease(0)

	// A request that ends takes its commands with it.
	if err := s.EnqueuePull(ctx, []registry.PullCommand{{CommandID: "c-3", RequestID: e.ID, System: "pulled",
		Attempt: 1, IssuedAt: t0, ConfirmBy: t0.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyLedger(ctx, e.ID, lethe.LedgerDelta{Status: lethe.RequestCanceled}); err != nil {
		t.Fatal(err)
	}
	lease(0)
}
