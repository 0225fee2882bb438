package lethe

import (
	"cmp"
	"slices"
	"time"
)

// MaxAfter bounds how many systems one system may be erased after: a
// longer list is a registry mistake rather than a design.
const MaxAfter = 32

// AfterCycle returns the cycle that giving system name the dependencies
// after would close, as the names along it from name back to name (each
// erased after the next), or nil when there is none. graph maps every
// other system to its After; name's own entry in it is ignored. The
// registry keeps the graph free of cycles, so any new cycle passes through
// name, and a request can always make progress.
func AfterCycle(name string, after []string, graph map[string][]string) []string {
	next := func(s string) []string {
		if s == name {
			return after
		}
		return graph[s]
	}
	seen := map[string]bool{}
	var path []string
	var walk func(s string) bool
	walk = func(s string) bool {
		path = append(path, s)
		for _, d := range next(s) {
			if d == name {
				path = append(path, name)
				return true
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			if walk(d) {
				return true
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if walk(name) {
		return path
	}
	return nil
}

// ErasurePlan is what a request for a subject with some identifier types
// would dispatch, computed from the registry without dispatching anything
// (POST /v1/erasures/plan): which systems, in which waves.
type ErasurePlan struct {
	// IdentifierTypes are the subject's types the plan starts from.
	IdentifierTypes []string `json:"identifier_types"`
	// Systems are the targeted systems, ordered by wave, then name.
	Systems []PlannedSystem `json:"systems"`
	// Waves lists the systems dispatched at each step, first wave first:
	// a system is in the wave after the last of its targeted dependencies
	// (System.After) and, when only identifiers other systems reveal reach
	// it, after the first system that reveals them. Held systems are in no
	// wave.
	Waves [][]string `json:"waves"`
}

// PlannedSystem is one system of an ErasurePlan.
type PlannedSystem struct {
	Name string `json:"name"`
	// Wave counts from 1; 0 for a system a legal hold keeps, which is not
	// dispatched at all and holds up no other.
	Wave int `json:"wave"`
	// Identifiers are the identifier types the system would be sent.
	Identifiers []string `json:"identifiers"`
	// Derived is set when only identifiers that other systems reveal
	// (System.Produces) reach the system; RevealedBy names those systems.
	Derived    bool     `json:"derived"`
	RevealedBy []string `json:"revealed_by,omitempty"`
	// After are the targeted systems it waits for: its System.After less
	// those the request does not target or a hold keeps.
	After []string `json:"after"`
	// Hold is the legal hold that keeps the subject's data in the system.
	Hold *PlannedHold `json:"hold,omitempty"`
}

// PlannedHold names the legal hold that keeps a PlannedSystem.
type PlannedHold struct {
	ID        string     `json:"id"`
	Basis     string     `json:"basis"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// PlanErasure computes the plan of a request whose subject has the
// identifier types given, over the active systems, where held maps a
// system to the legal hold keeping the subject there. It follows what the
// erasure workflow does: a system erasing by a known type is targeted; the
// types a dispatched system may reveal become known in the next round; a
// held system is not dispatched, reveals nothing and delays no one.
func PlanErasure(types []string, systems []System, held map[string]*Hold) ErasurePlan {
	known := map[string]bool{}
	for _, t := range types {
		known[t] = true
	}
	type entry struct {
		sys System
		p   PlannedSystem
	}
	targeted := map[string]*entry{}
	var order []string
	sorted := slices.Clone(systems)
	slices.SortFunc(sorted, func(a, b System) int { return cmp.Compare(a.Name, b.Name) })
	for round := 0; ; round++ {
		var added []*entry
		for _, s := range sorted {
			if targeted[s.Name] != nil || !slices.ContainsFunc(s.Identifiers, func(t string) bool { return known[t] }) {
				continue
			}
			e := &entry{sys: s, p: PlannedSystem{Name: s.Name, Derived: round > 0}}
			if h := held[s.Name]; h != nil {
				e.p.Hold = &PlannedHold{ID: h.ID, Basis: h.Basis, ExpiresAt: h.ExpiresAt}
			}
			if round > 0 {
				for _, name := range order {
					r := targeted[name]
					if r.p.Hold == nil && shares(r.sys.Produces, s.Identifiers) {
						e.p.RevealedBy = append(e.p.RevealedBy, name)
					}
				}
			}
			added = append(added, e)
		}
		if len(added) == 0 {
			break
		}
		for _, e := range added {
			targeted[e.sys.Name] = e
			order = append(order, e.sys.Name)
			if e.p.Hold == nil {
				for _, t := range e.sys.Produces {
					known[t] = true
				}
			}
		}
	}

	waves := map[string]int{}
	var wave func(name string, visiting map[string]bool) int
	wave = func(name string, visiting map[string]bool) int {
		if w, ok := waves[name]; ok {
			return w
		}
		e := targeted[name]
		if e.p.Hold != nil || visiting[name] {
			return 0
		}
		visiting[name] = true
		w := 1
		if len(e.p.RevealedBy) > 0 {
			first := 0
			for _, r := range e.p.RevealedBy {
				if rw := wave(r, visiting); first == 0 || rw < first {
					first = rw
				}
			}
			w = max(w, first+1)
		}
		for _, d := range e.sys.After {
			if de := targeted[d]; de != nil && de.p.Hold == nil {
				w = max(w, wave(d, visiting)+1)
			}
		}
		delete(visiting, name)
		waves[name] = w
		return w
	}

	plan := ErasurePlan{IdentifierTypes: sortedSet(types), Systems: []PlannedSystem{}, Waves: [][]string{}}
	for _, name := range order {
		e := targeted[name]
		e.p.Wave = wave(name, map[string]bool{})
		e.p.After = []string{}
		for _, d := range e.sys.After {
			if de := targeted[d]; de != nil && de.p.Hold == nil {
				e.p.After = append(e.p.After, d)
			}
		}
		slices.Sort(e.p.After)
		e.p.Identifiers = []string{}
		for _, t := range e.sys.Identifiers {
			if known[t] {
				e.p.Identifiers = append(e.p.Identifiers, t)
			}
		}
		slices.Sort(e.p.Identifiers)
		plan.Systems = append(plan.Systems, e.p)
	}
	slices.SortFunc(plan.Systems, func(a, b PlannedSystem) int {
		if a.Wave != b.Wave {
			return cmp.Compare(a.Wave, b.Wave)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for _, p := range plan.Systems {
		if p.Wave == 0 {
			continue
		}
		for len(plan.Waves) < p.Wave {
			plan.Waves = append(plan.Waves, []string{})
		}
		plan.Waves[p.Wave-1] = append(plan.Waves[p.Wave-1], p.Name)
	}
	return plan
}

func shares(a, b []string) bool {
	return slices.ContainsFunc(a, func(t string) bool { return slices.Contains(b, t) })
}

func sortedSet(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
