package bench

import (
	"fmt"
	"io"
	"strings"
)

// Report is everything one `lethe bench` run measured. Its JSON form
// (`lethe bench --json`) carries every figure the text form prints.
type Report struct {
	Machine     Machine  `json:"machine"`
	Stack       string   `json:"stack"`
	Concurrency int      `json:"concurrency"`
	Runs        []FanOut `json:"runs"`
	// PeakRSSBytes is the process's peak resident set size over the whole
	// run: with an embedded stack, Temporal, the broker, Lethe and the
	// load generator together.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// LoadBefore and LoadAfter are the machine's load averages (1, 5, 15
	// minutes) when the run started and ended.
	LoadBefore string `json:"load_average_before"`
	LoadAfter  string `json:"load_average_after"`
	// Bulk is the bulk measurement, in a run that asked for it.
	Bulk  *BulkFigures `json:"bulk,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// BulkFigures are one bulk erasure's figures, set against the per-request
// figures measured in the same run at the same fan-out: how much faster
// Lethe erases many subjects in one batch than one request each.
type BulkFigures struct {
	// Subjects were submitted in one batch to K systems that take batch
	// commands.
	Subjects int `json:"subjects"`
	K        int `json:"k"`
	// Seconds run from the submission's first byte to the batch seen
	// final; AcceptSeconds to the API's answer, which comes once the
	// subjects are recorded.
	Seconds       float64 `json:"seconds"`
	AcceptSeconds float64 `json:"accept_seconds"`
	// SubjectsPerSecond is Subjects ÷ Seconds.
	SubjectsPerSecond float64 `json:"subjects_per_second"`
	// SingleErasuresPerSecond is the per-request measurement's completed
	// erasures/s at the same K, and RatioToSingle SubjectsPerSecond ÷ it.
	SingleErasuresPerSecond float64 `json:"single_erasures_per_second"`
	RatioToSingle           float64 `json:"ratio_to_single"`
	// PeakRSSMiB is the process's peak RSS once the batch ended: the
	// stack's and the bulk erasure's, before the per-request measurement.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// LoadBefore and LoadAfter are the machine's load averages when the
	// batch was submitted and when it ended.
	LoadBefore string `json:"load_average_before"`
	LoadAfter  string `json:"load_average_after"`
}

// compare sets the bulk figures against single, the per-request
// measurement at the same fan-out.
func (f *BulkFigures) compare(single FanOut) {
	f.SingleErasuresPerSecond = single.Lethe.CompletedPerSecond
	f.RatioToSingle = Ratio(f.SubjectsPerSecond, f.SingleErasuresPerSecond)
}

// FanOut is one fan-out K: Lethe's figures and, measured right after on the
// same stack, the baselines' and the ratios between them.
type FanOut struct {
	K int `json:"k"`
	// N is how many erasures, and operations of each baseline, were
	// measured, split into Rounds interleaved rounds.
	N      int           `json:"n"`
	Rounds int           `json:"rounds"`
	Lethe  LetheFigures  `json:"lethe"`
	Empty  *Figures      `json:"empty_workflow,omitempty"`
	Naive  *Figures      `json:"naive_workflow,omitempty"`
	Kafka  *Figures      `json:"raw_kafka,omitempty"`
	Ratio  *Ratios       `json:"ratios,omitempty"`
	Check  []TargetCheck `json:"targets,omitempty"`
}

// LetheFigures are Lethe's end-to-end figures at one fan-out.
type LetheFigures struct {
	// AcceptedPerSecond is how fast the API accepted requests when clients
	// only submitted, Concurrency at a time.
	AcceptedPerSecond float64 `json:"accepted_per_second"`
	// CompletedPerSecond is erasures carried from submission to completed,
	// with Concurrency requests in flight.
	CompletedPerSecond float64 `json:"completed_per_second"`
	// Latency is submission → completed, of the same requests.
	Latency Latency `json:"latency_ms"`
	// Commands is how many commands the connectors handled while those
	// requests ran, and CommandsPerSecond their rate: each is a round trip
	// over Kafka (command out, confirmation back).
	Commands          int64   `json:"commands"`
	CommandsPerSecond float64 `json:"commands_per_second"`
	Seconds           float64 `json:"seconds"`
}

// Figures are a baseline's: Count operations in Seconds.
type Figures struct {
	Count     int     `json:"count"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	Latency   Latency `json:"latency_ms"`
}

// Ratios set Lethe's figures against the baselines measured in the same run.
type Ratios struct {
	// ErasuresVsEmptyWorkflow is Lethe's completed erasures/s ÷ empty workflows/s.
	ErasuresVsEmptyWorkflow float64 `json:"erasures_vs_empty_workflow,omitempty"`
	// ErasuresVsNaiveWorkflow is Lethe's completed erasures/s ÷ naive workflows/s.
	ErasuresVsNaiveWorkflow float64 `json:"erasures_vs_naive_workflow,omitempty"`
	// P99VsNaiveP50 is Lethe's p99 latency ÷ the naive workflow's p50.
	P99VsNaiveP50 float64 `json:"p99_vs_naive_p50,omitempty"`
	// CommandsVsRawKafka is Lethe's commands/s ÷ raw Kafka round trips/s.
	CommandsVsRawKafka float64 `json:"commands_vs_raw_kafka,omitempty"`
}

// TargetCheck is one target of PERFORMANCE.md that applies to a run.
type TargetCheck struct {
	Figure string  `json:"figure"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
}

// figures turns a load of count operations into a baseline's figures.
func figures(l load) *Figures {
	return &Figures{
		Count:     len(l.latencies),
		Seconds:   l.elapsed.Seconds(),
		PerSecond: Rate(len(l.latencies), l.elapsed),
		Latency:   Summarize(l.latencies),
	}
}

// ratios computes the ratios the baselines allow and checks the targets.
func (r *FanOut) ratios() {
	x := &Ratios{}
	if r.Empty != nil {
		x.ErasuresVsEmptyWorkflow = Ratio(r.Lethe.CompletedPerSecond, r.Empty.PerSecond)
	}
	if r.Naive != nil {
		x.ErasuresVsNaiveWorkflow = Ratio(r.Lethe.CompletedPerSecond, r.Naive.PerSecond)
		x.P99VsNaiveP50 = Ratio(r.Lethe.Latency.P99, r.Naive.Latency.P50)
	}
	if r.Kafka != nil {
		x.CommandsVsRawKafka = Ratio(r.Lethe.CommandsPerSecond, r.Kafka.PerSecond)
	}
	if *x == (Ratios{}) {
		return
	}
	r.Ratio = x
	r.Check = targets(r.K, *x)
}

// targets are PERFORMANCE.md's targets that apply at fan-out k. The p99
// target is stated for K=5 with 20 requests in flight; it is checked at
// K=5 whatever the concurrency, which the report prints next to it.
func targets(k int, x Ratios) []TargetCheck {
	var out []TargetCheck
	if k == 1 && x.ErasuresVsEmptyWorkflow > 0 {
		out = append(out, TargetCheck{"erasures/s ÷ empty workflow/s", "≥ 0.5", x.ErasuresVsEmptyWorkflow, x.ErasuresVsEmptyWorkflow >= 0.5})
	}
	if k > 1 && x.ErasuresVsNaiveWorkflow > 0 {
		out = append(out, TargetCheck{"erasures/s ÷ naive workflow/s", "≥ 1.0", x.ErasuresVsNaiveWorkflow, x.ErasuresVsNaiveWorkflow >= 1})
	}
	if k == 5 && x.P99VsNaiveP50 > 0 {
		out = append(out, TargetCheck{"p99 ÷ naive p50", "< 3", x.P99VsNaiveP50, x.P99VsNaiveP50 < 3})
	}
	return out
}

// WriteText prints the report for a person at a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lethe bench: %d in flight, Lethe and baselines interleaved in rounds\n", r.Concurrency)
	fmt.Fprintf(&b, "machine: %d CPUs, %.1f GiB memory, %s/%s, %s\n", r.Machine.CPUs, gib(r.Machine.MemoryBytes), r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion)
	fmt.Fprintf(&b, "stack: %s\n", r.Stack)
	fmt.Fprintf(&b, "load average: %s at the start, %s at the end\n", r.LoadBefore, r.LoadAfter)
	for _, run := range r.Runs {
		l := run.Lethe
		fmt.Fprintf(&b, "\nK=%d: %d erasures and %d of each baseline, in %d rounds\n", run.K, run.N, run.N, run.Rounds)
		fmt.Fprintf(&b, "  %-15s %8.1f erasures/s  p50 %6.0f ms  p95 %6.0f ms  p99 %6.0f ms   accepted %.1f req/s, %.1f commands/s over Kafka\n",
			"Lethe", l.CompletedPerSecond, l.Latency.P50, l.Latency.P95, l.Latency.P99, l.AcceptedPerSecond, l.CommandsPerSecond)
		line := func(name, unit string, f *Figures) {
			if f == nil {
				return
			}
			fmt.Fprintf(&b, "  %-15s %8.1f %-10s  p50 %6.0f ms  p95 %6.0f ms  p99 %6.0f ms\n", name, f.PerSecond, unit, f.Latency.P50, f.Latency.P95, f.Latency.P99)
		}
		line("empty workflow", "wf/s", run.Empty)
		line(fmt.Sprintf("naive K=%d", run.K), "wf/s", run.Naive)
		line("raw Kafka", "trips/s", run.Kafka)
		if x := run.Ratio; x != nil {
			b.WriteString("  ratios:")
			if x.ErasuresVsEmptyWorkflow > 0 {
				fmt.Fprintf(&b, " erasures/s ÷ empty workflow/s %.2f;", x.ErasuresVsEmptyWorkflow)
			}
			if x.ErasuresVsNaiveWorkflow > 0 {
				fmt.Fprintf(&b, " ÷ naive workflow/s %.2f; p99 ÷ naive p50 %.2f;", x.ErasuresVsNaiveWorkflow, x.P99VsNaiveP50)
			}
			if x.CommandsVsRawKafka > 0 {
				fmt.Fprintf(&b, " commands/s ÷ raw Kafka round trips/s %.2f", x.CommandsVsRawKafka)
			}
			b.WriteString("\n")
		}
		for _, c := range run.Check {
			verdict := "met"
			if !c.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(&b, "  target %s %s: %.2f, %s\n", c.Figure, c.Target, c.Value, verdict)
		}
	}
	if f := r.Bulk; f != nil {
		fmt.Fprintf(&b, "\nbulk: %d subjects in one batch to K=%d systems taking batch commands\n", f.Subjects, f.K)
		fmt.Fprintf(&b, "  %.1f subjects/s: submitted to final in %.1f s (accepted after %.1f s)\n", f.SubjectsPerSecond, f.Seconds, f.AcceptSeconds)
		fmt.Fprintf(&b, "  one request per subject at K=%d in the same run: %.1f erasures/s; bulk ÷ single %.2f\n", f.K, f.SingleErasuresPerSecond, f.RatioToSingle)
		fmt.Fprintf(&b, "  peak RSS once the batch ended: %.0f MiB; load average %s at its submission, %s at its end\n", f.PeakRSSMiB, f.LoadBefore, f.LoadAfter)
	}
	fmt.Fprintf(&b, "\npeak RSS of this process: %.0f MiB\n", float64(r.PeakRSSBytes)/(1<<20))
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }
