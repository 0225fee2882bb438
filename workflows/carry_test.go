package workflows

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// The input a run carries into the next at continue-as-new is one payload,
// which Temporal refuses past 2 MB and warns about past 512 KB. Under
// RevisionStableNames it holds each identifier value once, in the subject,
// plus those of the commands still open, which may be dispatched again; a
// final command keeps what the view and the ledger show, and names the
// identifiers it was sent by their places in the subject. carriedBound is
// what the input may weigh: a fixed part, a share per command (with its
// system's target), per place, and per identifier value carried. No value
// is allowed for a final command.

// Shares of carriedBound, in bytes of the encoded input.
const (
	carriedFixed   = 4 << 10
	carriedCommand = 400
	carriedPlace   = 6
	carriedIDValue = 80
	// temporalWarnSize is the payload size past which Temporal warns.
	temporalWarnSize = 512 << 10
	// noSettling writes every step at once, as in most tests here.
	noSettling = -1
)

// carriedBound is the size the carried input of st may reach.
func carriedBound(st *State) int {
	n := carriedFixed + carriedIDValue*len(st.Subject)
	for _, c := range st.Commands {
		n += carriedCommand + carriedPlace*len(c.Sent)
		if c.open() {
			n += carriedIDValue * len(c.Identifiers)
		}
	}
	return n
}

// continuedAs decodes the input a run continued as new with, and its
// encoded size.
func continuedAs(t *testing.T, err error) (ErasureInput, int) {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want continue-as-new", err)
	}
	var next ErasureInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatalf("decode carried input: %v", err)
	}
	if next.State == nil {
		t.Fatal("carried input has no state")
	}
	return next, proto.Size(can.Input)
}

// continueAsNewAt has the workflow continue as new at d, once woken by a
// confirmation it already counted.
func (w *world) continueAsNewAt(d time.Duration, again func() wire.Confirmation) {
	w.at(d, func() {
		w.env.SetCurrentHistoryLength(continueAsNewAfter + 1)
		w.env.SignalWorkflow(SignalConfirm, ConfirmSignal{Confirmations: []wire.Confirmation{again()}})
	})
}

// confirmCommand answers cmd with outcome at the workflow's present.
func (w *world) confirmCommand(cmd CommandState, outcome wire.Outcome, derived ...wire.Identifier) wire.Confirmation {
	return wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: cmd.ID, RequestID: testRequestID,
		System: cmd.System, Outcome: outcome, Records: 1, ConfirmedAt: w.env.Now().UTC(), DerivedIdentifiers: derived}
}

func confirmPublished(w *world, o activities.Outbound, derived ...wire.Identifier) wire.Confirmation {
	return w.confirmCommand(CommandState{ID: o.Command.CommandID, System: o.Command.System}, wire.OutcomeErased, derived...)
}

func TestContinueAsNewInputBoundedThousandSystems(t *testing.T) {
	const n, open = 1200, 50
	systems := make([]activities.Target, n)
	for i := range systems {
		systems[i] = target(fmt.Sprintf("svc-%04d", i), day, "user_id", "email")
	}
	w := newWorld(t, systems...)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for _, o := range w.published()[open:] {
			out = append(out, confirmPublished(w, o))
		}
		return out
	})
	w.continueAsNewAt(2*time.Minute, func() wire.Confirmation { return confirmPublished(w, w.published()[n-1]) })
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "a secret seed"
	in.Policy.Settle = noSettling
	next, size := continuedAs(t, w.run(in))
	if bound := min(carriedBound(next.State), temporalWarnSize); size > bound {
		t.Errorf("carried input of %d systems is %d bytes, want at most %d", n, size, bound)
	}
	t.Logf("carried input of %d systems (%d open): %d bytes", n, open, size)

	w2 := newWorld(t, systems...)
	w2.env.SetStartTime(testStart.Add(2 * time.Minute))
	w2.confirmAt(time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for _, c := range next.State.Commands {
			if c.open() {
				out = append(out, w2.confirmCommand(c, wire.OutcomeErased))
			}
		}
		return out
	})
	if err := w2.run(next); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	if k := len(w2.published()); k != 0 {
		t.Errorf("continued run published %d commands, want none", k)
	}
	if status, _ := w2.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("continued run ended %q, want completed", status)
	}
	e := w2.query()
	erased := 0
	for _, p := range e.Systems {
		if p.Status == lethe.SystemErased && p.Records == 1 {
			erased++
		}
	}
	if erased != n {
		t.Errorf("%d of %d systems erased with one record after continue-as-new", erased, n)
	}
}

func TestContinueAsNewInputBoundedThousandDerived(t *testing.T) {
	// Four sources reveal 250 user_ids each; five systems erase by user_id,
	// and so are sent the 1,000 in four commands each. Four of them erase,
	// one stays open over continue-as-new.
	const sources, perSource = 4, 250
	var systems []activities.Target
	for i := range sources {
		systems = append(systems, target(fmt.Sprintf("src-%d", i), day, "email"))
	}
	for _, name := range []string{"billing", "crm", "orders", "shop", "stuck"} {
		systems = append(systems, target(name, day, "user_id"))
	}
	derived := func(i int) []wire.Identifier {
		ids := make([]wire.Identifier, perSource)
		for j := range ids {
			ids[j] = id("user_id", fmt.Sprintf("user-%d-%03d", i, j))
		}
		return ids
	}
	w := newWorld(t, systems...)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for i := range sources {
			out = append(out, confirmPublished(w, w.commandsToOutbound(fmt.Sprintf("src-%d", i))[0], derived(i)...))
		}
		return out
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for _, name := range []string{"billing", "crm", "orders", "shop"} {
			for _, o := range w.commandsToOutbound(name) {
				out = append(out, confirmPublished(w, o))
			}
		}
		return out
	})
	w.continueAsNewAt(3*time.Minute, func() wire.Confirmation { return confirmPublished(w, w.commandsToOutbound("billing")[0]) })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "a secret seed"
	in.Policy.Settle = noSettling
	next, size := continuedAs(t, w.run(in))
	if got, want := len(next.State.Subject), 1+sources*perSource; got != want {
		t.Fatalf("carried subject of %d identifiers, want %d", got, want)
	}
	if bound := carriedBound(next.State); size > bound {
		t.Errorf("carried input with %d derived identifiers is %d bytes, want at most %d",
			sources*perSource, size, bound)
	}
	t.Logf("carried input with %d derived identifiers: %d bytes", sources*perSource, size)

	// The next run erases stuck, and when stuck reveals one more user_id,
	// sends billing that one alone: what billing was sent before is known
	// from the places the final commands carried.
	w2 := newWorld(t, systems...)
	w2.env.SetStartTime(testStart.Add(3 * time.Minute))
	extra := id("user_id", "user-extra")
	w2.confirmAt(time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for _, c := range next.State.Commands {
			if c.open() {
				out = append(out, w2.confirmCommand(c, wire.OutcomeErased, extra))
			}
		}
		return out
	})
	w2.confirmAt(2*time.Minute, func() []wire.Confirmation {
		var out []wire.Confirmation
		for _, o := range w2.published() {
			out = append(out, confirmPublished(w2, o))
		}
		return out
	})
	if err := w2.run(next); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	if status, _ := w2.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("continued run ended %q, want completed", status)
	}
	for _, name := range []string{"billing", "crm", "orders", "shop", "stuck"} {
		cmds := w2.commandsTo(name)
		if len(cmds) != 1 || len(cmds[0].Identifiers) != 1 || cmds[0].Identifiers[0] != extra {
			t.Errorf("continued run sent %s %d commands, want one with the new identifier alone", name, len(cmds))
		}
	}
	for _, p := range w2.query().Systems {
		if p.Status != lethe.SystemErased {
			t.Errorf("system %s %s after continue-as-new, want erased", p.Name, p.Status)
		}
	}
}

// commandsToOutbound lists what was published to a system, in order.
func (w *world) commandsToOutbound(system string) []activities.Outbound {
	var out []activities.Outbound
	for _, o := range w.published() {
		if o.Command.System == system {
			out = append(out, o)
		}
	}
	return out
}
