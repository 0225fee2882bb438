package api

import (
	"cmp"
	"slices"
	"strings"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// batchSubject is one distinct subject of a submission: its identifiers,
// sorted by type then value, and the lines that named it.
type batchSubject struct {
	ids   []wire.Identifier
	lines []int32
}

// merge turns the entries into distinct subjects: entries that share an
// identifier (same type and value), directly or through others, are one
// subject with the union of their identifiers, placed where its first
// entry was. A subject that grows past wire.MaxIdentifiers this way is
// refused with the lines that made it.
func (b *batchReader) merge() ([]batchSubject, error) {
	parent := make([]int32, len(b.entries))
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(i int32) int32 {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	first := make(map[string]int32, len(b.entries))
	for i, ids := range b.entries {
		for _, id := range ids {
			k := id.Type + "\x00" + id.Value
			j, ok := first[k]
			if !ok {
				first[k] = int32(i)
				continue
			}
			// The root is always a group's earliest entry.
			ri, rj := find(int32(i)), find(j)
			if ri < rj {
				parent[rj] = ri
			} else {
				parent[ri] = rj
			}
		}
	}
	first = nil
	item := make([]int32, len(b.entries))
	var subjects []batchSubject
	for i := range b.entries {
		r := find(int32(i))
		if r == int32(i) {
			item[i] = int32(len(subjects))
			subjects = append(subjects, batchSubject{})
		} else {
			item[i] = item[r]
		}
		s := &subjects[item[i]]
		if s.ids == nil {
			s.ids = b.entries[i] // no other reference is left to it
		} else {
			s.ids = append(s.ids, b.entries[i]...)
		}
		s.lines = append(s.lines, b.lines[i])
		b.entries[i] = nil
	}
	b.entries, b.lines = nil, nil
	var over []int
	overCount := 0
	for i := range subjects {
		s := &subjects[i]
		if len(s.lines) > 1 {
			slices.SortFunc(s.ids, compareIdentifiers)
			s.ids = slices.Compact(s.ids)
		}
		if len(s.ids) > wire.MaxIdentifiers {
			overCount++
			for _, l := range s.lines {
				if len(over) < MaxBadLines {
					over = append(over, int(l))
				}
			}
		}
		s.lines = nil
	}
	if overCount > 0 {
		slices.Sort(over)
		return nil, &linesError{
			err: lethe.Errorf(lethe.KindInvalid, "invalid_batch",
				"%s that share an identifier are one subject, and %d would then have more than %d identifiers; none was recorded",
				strings.ToUpper(b.units()[:1])+b.units()[1:], overCount, wire.MaxIdentifiers),
			lines: over,
		}
	}
	return subjects, nil
}

func compareIdentifiers(a, c wire.Identifier) int {
	return cmp.Or(strings.Compare(a.Type, c.Type), strings.Compare(a.Value, c.Value))
}
