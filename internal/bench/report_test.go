package bench

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe"
)

// TestBulkReportShape: a run with the bulk measurement carries, under
// "bulk", every figure of it, the ratio to the per-request measurement
// computed from the two; a run without it has no "bulk" at all.
func TestBulkReportShape(t *testing.T) {
	f := &BulkFigures{Subjects: 10000, K: 5, Seconds: 20, AcceptSeconds: 2, SubjectsPerSecond: 500,
		PeakRSSMiB: 612.4, LoadBefore: "1.00 0.90 0.80", LoadAfter: "3.00 1.50 1.00"}
	f.compare(FanOut{K: 5, Lethe: LetheFigures{CompletedPerSecond: 40}})
	if f.SingleErasuresPerSecond != 40 || f.RatioToSingle != 12.5 {
		t.Errorf("compare: single %v, ratio %v; want 40 and 500 ÷ 40 = 12.5", f.SingleErasuresPerSecond, f.RatioToSingle)
	}
	r := &Report{Concurrency: 20, Runs: []FanOut{{K: 5}}, Bulk: f}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Bulk map[string]any `json:"bulk"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"subjects": 10000.0, "k": 5.0, "seconds": 20.0, "accept_seconds": 2.0, "subjects_per_second": 500.0,
		"single_erasures_per_second": 40.0, "ratio_to_single": 12.5, "peak_rss_mib": 612.4,
		"load_average_before": "1.00 0.90 0.80", "load_average_after": "3.00 1.50 1.00",
	}
	if !reflect.DeepEqual(got.Bulk, want) {
		t.Errorf("bulk = %v\nwant %v", got.Bulk, want)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"bulk: 10000 subjects in one batch to K=5", "500.0 subjects/s", "40.0 erasures/s; bulk ÷ single 12.50", "612 MiB"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("the text report has no %q:\n%s", s, text.String())
		}
	}

	b, err = json.Marshal(&Report{Runs: []FanOut{{K: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	json.Unmarshal(b, &keys)
	if _, ok := keys["bulk"]; ok {
		t.Errorf("a run without the bulk measurement reports %s", b)
	}
}

// TestWriteSubjects: the generator writes n lines, each a subject of
// the NDJSON body, with an email and a user id unique to the key.
func TestWriteSubjects(t *testing.T) {
	var b bytes.Buffer
	if err := writeSubjects(&b, "k-1", 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	var seen []string
	for _, l := range lines {
		var v struct {
			Subject map[string]string `json:"subject"`
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil || len(v.Subject) != 2 || v.Subject["email"] == "" || v.Subject[IdentifierType] == "" {
			t.Fatalf("line %q is not a subject with an email and a %s (%v)", l, IdentifierType, err)
		}
		seen = append(seen, v.Subject["email"], v.Subject[IdentifierType])
	}
	if len(lines) != 3 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 6 {
		t.Errorf("subjects %q: want 3 lines, every identifier unique", lines)
	}
}

// TestVerifyBatch: a bulk figure counts only a batch that completed every
// subject on every system.
func TestVerifyBatch(t *testing.T) {
	names := []string{"bench-00", "bench-01"}
	ok := func() lethe.Batch {
		return lethe.Batch{ID: "b", Status: lethe.RequestCompleted, Total: 4, Counts: lethe.BatchCounts{Completed: 4},
			Systems: []lethe.BatchSystemCounts{{Name: "bench-00", Erased: 4}, {Name: "bench-01", Erased: 4}}}
	}
	if err := verifyBatch(ok(), 4, names); err != nil {
		t.Errorf("a completed batch: %v", err)
	}
	failed := ok()
	failed.Status, failed.Counts = lethe.RequestFailed, lethe.BatchCounts{Completed: 3, Failed: 1}
	short := ok()
	short.Systems[1].Erased = 3
	missing := ok()
	missing.Systems = missing.Systems[:1]
	for name, b := range map[string]lethe.Batch{"failed": failed, "a system short": short, "a system missing": missing} {
		if err := verifyBatch(b, 4, names); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
