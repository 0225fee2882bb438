package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// oversizedEngine starts every workflow with one more email of the
// subject, longer than the contract allows: the worker refuses to publish
// a command carrying it, a non-retryable failure the workflow cannot get
// past. The API never accepts such a value; this stands for any error of
// the kind.
type oversizedEngine struct{ api.Engine }

func (e oversizedEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	in.Subject = append(in.Subject, wire.Identifier{Type: "email", Value: strings.Repeat("x", wire.MaxValueBytes+1)})
	return e.Engine.StartErasure(ctx, in)
}

// TestFailedRunRecorded runs a request into a non-retryable activity
// failure on the whole stack: the API must then show it failed, with an
// audit event saying why, rather than running (and later overdue) for good.
func TestFailedRunRecorded(t *testing.T) {
	s := newStack(t, stackOptions{Engine: func(e api.Engine) api.Engine { return oversizedEngine{Engine: e} }})
	s.recordSystem("mailer", []string{"email"})
	s.runConnector("mailer", erase())
	e := s.submit(map[string]string{"email": "failed-run@example.test"})
	done := s.await(e.ID, time.Minute)
	if done.Status != lethe.RequestFailed || done.CompletedAt == nil {
		t.Fatalf("request %s completed %v, want failed with its time: %s", done.Status, done.CompletedAt, describe(done))
	}
	var kinds, details []string
	rows, err := s.DB.QueryContext(s.ctx, `SELECT kind, detail FROM audit_events WHERE request_id = $1 ORDER BY seq`, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, detail string
		if err := rows.Scan(&kind, &detail); err != nil {
			t.Fatal(err)
		}
		kinds, details = append(kinds, kind), append(details, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := "stopped on a non-retryable lethe.invalid error; the worker log has the cause"
	if n := len(kinds); n == 0 || kinds[n-1] != string(lethe.AuditFailed) || details[n-1] != want {
		t.Errorf("audit %v %q, want it to end with failed: %q", kinds, details, want)
	}
	for _, d := range details {
		if strings.Contains(d, "failed-run@example.test") || strings.Contains(d, "xxxx") {
			t.Errorf("audit detail %q holds an identifier value", d)
		}
	}
	if r := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/cancel", nil); r.Status != http.StatusConflict {
		t.Errorf("cancel of a failed request = %d %s, want 409", r.Status, r.Body)
	}
}
