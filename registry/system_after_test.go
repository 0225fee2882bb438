package registry_test

import (
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/lethe-dev/lethe"
)

func TestPutSystemAfter(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	put := func(name string, after ...string) error {
		_, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"email"}, After: after}, ops)
		return err
	}
	for _, step := range []struct {
		name  string
		after []string
	}{{"a", nil}, {"b", []string{"a"}}, {"c", []string{"b"}}} {
		if err := put(step.name, step.after...); err != nil {
			t.Fatalf("put %s: %v", step.name, err)
		}
	}
	got, err := s.GetSystem(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.After, []string{"b"}) {
		t.Errorf("c.after = %v, want [b]", got.After)
	}

	err = put("a", "c")
	if lethe.ErrorKind(err) != lethe.KindConflict || !strings.Contains(err.Error(), "dependency_cycle") ||
		!strings.Contains(err.Error(), "a → c → b → a") {
		t.Fatalf("closing a cycle: err = %v, want a dependency_cycle conflict naming a → c → b → a", err)
	}
	if a, _ := s.GetSystem(ctx, "a"); len(a.After) != 0 {
		t.Errorf("a refused change was stored: a.after = %v", a.After)
	}
	if err := put("a", "a"); lethe.ErrorKind(err) != lethe.KindConflict {
		t.Errorf("a system after itself: err = %v, want a conflict", err)
	}
	err = put("d", "nowhere")
	if lethe.ErrorKind(err) != lethe.KindInvalid || !strings.Contains(err.Error(), "unknown_dependency") {
		t.Errorf("unknown dependency: err = %v, want invalid unknown_dependency", err)
	}
	if err := s.RetireSystem(ctx, "a", "token:ops"); err != nil {
		t.Fatal(err)
	}
	if err := put("e", "a"); lethe.ErrorKind(err) != lethe.KindInvalid {
		t.Errorf("after a retired system: err = %v, want invalid", err)
	}
	// b still names the retired a; bringing a back after c closes the
	// cycle again and is refused.
	if err := put("a", "c"); lethe.ErrorKind(err) != lethe.KindConflict {
		t.Errorf("re-registering a after c: err = %v, want a conflict", err)
	}
}

// Two registrations that close a cycle only together take turns under the
// lock: one of them is refused.
func TestPutSystemAfterConcurrentCycle(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	for _, name := range []string{"x", "y"} {
		if _, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"email"}}, ops); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, pair := range [][2]string{{"x", "y"}, {"y", "x"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, errs[i] = s.PutSystem(ctx, lethe.System{Name: pair[0], Identifiers: []string{"email"}, After: []string{pair[1]}}, ops)
			}()
		}
		wg.Wait()
		refused := 0
		for _, err := range errs {
			if lethe.ErrorKind(err) == lethe.KindConflict {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: %d of the two registrations refused, want exactly 1 (errs %v)", round, refused, errs)
		}
		for _, name := range []string{"x", "y"} {
			if _, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"email"}}, ops); err != nil {
				t.Fatal(err)
			}
		}
	}
}
