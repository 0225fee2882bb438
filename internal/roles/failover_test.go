package roles

import (
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/kafkasec"
)

// TestWorkerOptionsHandOff: the worker gets the sticky and stop timeouts of
// its settings, or the defaults, which recover from a lost worker in
// seconds and let a stopped one finish its tasks.
func TestWorkerOptionsHandOff(t *testing.T) {
	o := WorkerOptions(Failover{})
	if o.StickyScheduleToStartTimeout != DefaultStickyTimeout || o.WorkerStopTimeout != DefaultWorkerStopTimeout {
		t.Errorf("defaults: sticky %v, stop %v; want %v, %v", o.StickyScheduleToStartTimeout, o.WorkerStopTimeout,
			DefaultStickyTimeout, DefaultWorkerStopTimeout)
	}
	if o.WorkerStopTimeout == 0 {
		t.Error("a stopping worker would abandon its tasks in flight (WorkerStopTimeout 0)")
	}
	o = WorkerOptions(Failover{StickyTimeout: 1500 * time.Millisecond, StopTimeout: 25 * time.Second})
	if o.StickyScheduleToStartTimeout != 1500*time.Millisecond || o.WorkerStopTimeout != 25*time.Second {
		t.Errorf("set: sticky %v, stop %v; want 1.5s, 25s", o.StickyScheduleToStartTimeout, o.WorkerStopTimeout)
	}
}

// TestFailoverValidate: negative timeouts, a task timeout over Temporal's
// limit and heartbeats too rare for the session are refused.
func TestFailoverValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    Failover
		want string
	}{
		{"negative task timeout", Failover{WorkflowTaskTimeout: -time.Second}, "negative"},
		{"negative sticky timeout", Failover{StickyTimeout: -time.Second}, "negative"},
		{"negative stop timeout", Failover{StopTimeout: -time.Second}, "negative"},
		{"task timeout over the limit", Failover{WorkflowTaskTimeout: 3 * time.Minute}, "limit"},
		{"rare heartbeats", Failover{KafkaGroup: kafkasec.GroupTimeouts{Session: 6 * time.Second, Heartbeat: 4 * time.Second}}, "a third"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if err := (Failover{}).Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}
