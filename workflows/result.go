package workflows

import "github.com/lethe-dev/lethe"

// ErasureResult is what ErasureWorkflow returns when a request ends with
// every command final, so that the Temporal UI's Result panel says what
// happened without a trip to the API. It names systems and counts, never
// an identifier value or a detail a system sent. A run that fails, is
// canceled or continues as new returns its error instead.
type ErasureResult struct {
	Status lethe.RequestStatus `json:"status"`
	// Overdue is set when the deadline passed with systems open.
	Overdue bool            `json:"overdue,omitempty"`
	Systems []SystemOutcome `json:"systems"`
	Counts  ResultCounts    `json:"counts"`
}

// SystemOutcome is how one system ended.
type SystemOutcome struct {
	Name     string             `json:"name"`
	Status   lethe.SystemStatus `json:"status"`
	Attempts int                `json:"attempts"`
	Records  int64              `json:"records"`
}

// ResultCounts sums the systems by outcome and the records they erased.
type ResultCounts struct {
	Systems  int   `json:"systems"`
	Erased   int   `json:"erased"`
	NotFound int   `json:"not_found"`
	Retained int   `json:"retained"`
	Failed   int   `json:"failed"`
	Records  int64 `json:"records"`
}

// result summarises the request as it stands. The value a workflow
// returns travels in its completion, which replay does not compare: every
// revision returns it, and histories recorded when the workflow returned
// nothing replay unchanged.
func (w *erasure) result() ErasureResult {
	r := ErasureResult{Status: w.status, Overdue: w.overdue, Systems: []SystemOutcome{}}
	for _, p := range w.progressAll() {
		r.Systems = append(r.Systems, SystemOutcome{Name: p.Name, Status: p.Status, Attempts: p.Attempts, Records: p.Records})
		r.Counts.Systems++
		r.Counts.Records += p.Records
		switch p.Status {
		case lethe.SystemErased:
			r.Counts.Erased++
		case lethe.SystemNotFound:
			r.Counts.NotFound++
		case lethe.SystemRetained:
			r.Counts.Retained++
		case lethe.SystemFailed:
			r.Counts.Failed++
		}
	}
	return r
}
