package activities

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
)

// recordingLedger is a ledger that can tell whether a request was recorded.
type recordingLedger struct {
	fakeLedger
	recorded bool
	err      error
}

func (l *recordingLedger) ErasureRecorded(context.Context, string) (bool, error) {
	return l.recorded, l.err
}

var _ RequestChecker = (*recordingLedger)(nil)

// A workflow may run for a request whose recording failed after the
// workflow started; Plan must stop it before anything is dispatched.
func TestPlanRefusesAnUnrecordedRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ledger    *recordingLedger
		code      string
		retryable bool
	}{
		{"recorded", &recordingLedger{recorded: true}, "", false},
		{"never recorded", &recordingLedger{}, ErrTypeNotFound, false},
		{"ledger down", &recordingLedger{err: lethe.Errorf(lethe.KindUnavailable, "database_unavailable", "down")}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fakeRegistry{systems: []lethe.System{{Name: "orders", Identifiers: []string{"email"}}}}
			env := newEnv()
			a := &Activities{Registry: reg, Ledger: tc.ledger}
			env.RegisterActivity(a)
			_, err := env.ExecuteActivity(a.Plan, PlanInput{RequestID: testRequestID, Types: []string{"email"}})
			var appErr *temporal.ApplicationError
			switch {
			case tc.code == "" && !tc.retryable:
				if err != nil || len(reg.asked) != 1 {
					t.Errorf("Plan = %v after asking the registry %d times, want success", err, len(reg.asked))
				}
			case tc.retryable:
				if err == nil || (errors.As(err, &appErr) && appErr.NonRetryable()) {
					t.Errorf("Plan = %v, want a retryable error", err)
				}
			default:
				if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != tc.code {
					t.Errorf("Plan = %v, want a non-retryable %s error", err, tc.code)
				}
				if len(reg.asked) != 0 {
					t.Errorf("the registry was asked for targets of an unrecorded request")
				}
			}
		})
	}
}
