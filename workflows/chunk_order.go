package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
)

// A chunk honours lethe.System.After per subject, as ErasureWorkflow does
// per request (see order.go): a subject's identifiers go to a system only
// once each system it is erased after that targets the subject has
// reached a final outcome for that subject. Held systems count as
// retained; a failed one keeps the subject waiting there, stuck, until a
// retry of it succeeds. Targets without After take the path they always
// took, so recorded histories replay unchanged.

// holdBack returns the items of t to dispatch now and keeps the others
// waiting; planned are the (subject, system) pairs of the wave being
// planned, which count as open.
func (c *chunk) holdBack(now time.Time, t activities.Target, items []int, planned map[outcomeKey]bool) []int {
	if len(t.After) == 0 {
		return items
	}
	var ready []int
	waiting := 0
	for _, l := range items {
		open, failed := c.blockers(l, t, planned)
		if len(open) == 0 && len(failed) == 0 {
			ready = append(ready, l)
			continue
		}
		c.setWait(outcomeKey{l, t.System}, open, failed)
		waiting++
	}
	if waiting > 0 {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned, System: t.System,
			Detail: fmt.Sprintf("chunk %d: %d subjects wait for %s", c.in.Chunk, waiting, strings.Join(t.After, ", "))})
	}
	return ready
}

// blockers names, for subject local, the systems of t.After that target
// it and are still open there, and those that cannot finish before a retry.
func (c *chunk) blockers(local int, t activities.Target, planned map[outcomeKey]bool) (open, failed []string) {
	for _, dep := range t.After {
		k := outcomeKey{local, dep}
		o := c.outcomes[k]
		switch {
		case planned[k]:
			open = append(open, dep)
		case o == nil:
			// Not targeted for this subject.
		case o.wait != "":
			if o.stuck {
				failed = append(failed, dep)
			} else {
				open = append(open, dep)
			}
		case o.status == lethe.SystemFailed:
			failed = append(failed, dep)
		case !o.status.Final():
			open = append(open, dep)
		}
	}
	return open, failed
}

// setWait records why the subject's identifiers wait for system k.system,
// and reports whether that changed.
func (c *chunk) setWait(k outcomeKey, open, failed []string) bool {
	o := c.outcome(k)
	wait, stuck := waitDetail(open, failed), len(open) == 0
	if o.wait == wait && o.stuck == stuck {
		return false
	}
	o.wait, o.stuck = wait, stuck
	c.recompute(k)
	return true
}

// release dispatches the waiting subjects whose systems to erase first
// are now final, and brings the others' details up to date, pass after
// pass until nothing changes: whether a system is stuck depends on the
// systems before it in the chain, whatever their names.
func (c *chunk) release(now time.Time) error {
	for range len(c.targets) + 1 {
		changed, err := c.releasePass(now)
		if err != nil || !changed {
			return err
		}
	}
	return nil
}

func (c *chunk) releasePass(now time.Time) (changed bool, err error) {
	for _, name := range c.systemNames() {
		t := c.targets[name]
		if len(t.After) == 0 {
			continue
		}
		var ready []int
		for l := range c.subjects {
			k := outcomeKey{l, name}
			o := c.outcomes[k]
			if o == nil || o.wait == "" || c.subjects[l].status == lethe.RequestCanceled {
				continue
			}
			open, failed := c.blockers(l, t, nil)
			if len(open) > 0 || len(failed) > 0 {
				changed = c.setWait(k, open, failed) || changed
				continue
			}
			o.wait, o.stuck = "", false
			ready = append(ready, l)
		}
		if len(ready) == 0 {
			continue
		}
		slices.Sort(ready)
		if err := c.dispatch(now, t, ready); err != nil {
			return false, err
		}
		changed = true
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: name, Attempt: 1,
			Detail: fmt.Sprintf("chunk %d: %d subjects, after %s", c.in.Chunk, len(ready), strings.Join(t.After, ", "))})
	}
	return changed, nil
}
