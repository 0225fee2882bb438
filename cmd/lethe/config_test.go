package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/roles"
)

func parseEnv(t *testing.T, env map[string]string) (*config, error) {
	t.Helper()
	return parseConfig("worker", nil, func(k string) string { return env[k] }, io.Discard, nil)
}

// The deadline settings read as documented, and a malformed one names the
// variable at fault.
func TestDeadlineSettings(t *testing.T) {
	c, err := parseEnv(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	deadline, before, policies, reminders, err := c.deadlines()
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if deadline != 720*time.Hour || before != 48*time.Hour || policies["ccpa"] != 1080*time.Hour ||
		policies["gdpr"] != 720*time.Hour || !slices.Equal(reminders, []float64{0.5, 0.8}) {
		t.Errorf("defaults: %v %v %v %v", deadline, before, policies, reminders)
	}
	c, _ = parseEnv(t, map[string]string{"LETHE_REMINDERS": "none", "LETHE_DEADLINE_POLICIES": "lgpd=360h"})
	_, _, policies, reminders, err = c.deadlines()
	if err != nil || len(reminders) != 0 || reminders == nil || len(policies) != 1 || policies["lgpd"] != 360*time.Hour {
		t.Errorf("none / lgpd: %v %v %v; want no reminders (empty, not nil) and only lgpd", policies, reminders, err)
	}
	for k, v := range map[string]string{
		"LETHE_DEADLINE":          "a month",
		"LETHE_TARGET_BEFORE":     "-2h",
		"LETHE_DEADLINE_POLICIES": "ccpa",
		"LETHE_REMINDERS":         "50",
	} {
		c, err := parseEnv(t, map[string]string{k: v})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := c.deadlines(); err == nil || !strings.Contains(err.Error(), strings.Fields(k)[0]) {
			t.Errorf("%s=%q: err %v, want one naming the variable", k, v, err)
		}
	}
	c, _ = parseEnv(t, map[string]string{"LETHE_ESCALATION_WEBHOOK": "ftp://example.com"})
	if _, err := c.escalations(); err == nil || !strings.Contains(err.Error(), "LETHE_ESCALATION_WEBHOOK") {
		t.Errorf("bad webhook: %v", err)
	}
}

// LETHE_SETTLE reaches the workflow policy: the default window, another
// one, or 0 for none (a negative Policy.Settle); a bad value names it.
func TestSettleSetting(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 10 * time.Second, "30s": 30 * time.Second, "0": -1, "0s": -1} {
		c, err := parseEnv(t, map[string]string{"LETHE_SETTLE": v})
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.roleSettings()
		if err != nil {
			t.Fatalf("LETHE_SETTLE=%q: %v", v, err)
		}
		if s.Policy.Settle != want {
			t.Errorf("LETHE_SETTLE=%q: policy settle %v, want %v", v, s.Policy.Settle, want)
		}
	}
	for _, v := range []string{"-5s", "soon"} {
		c, err := parseEnv(t, map[string]string{"LETHE_SETTLE": v})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.roleSettings(); err == nil || !strings.Contains(err.Error(), "LETHE_SETTLE") {
			t.Errorf("LETHE_SETTLE=%q: err %v, want one naming the variable", v, err)
		}
	}
}

// The fail-over settings reach roles.Settings: the defaults, values of the
// operator's, and a clear error naming the variable for each bad value.
func TestFailoverSettings(t *testing.T) {
	c, err := parseEnv(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.roleSettings()
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	want := roles.Failover{
		KafkaGroup:          kafkasec.GroupTimeouts{Session: 6 * time.Second, Heartbeat: time.Second, Rebalance: 10 * time.Second},
		WorkflowTaskTimeout: 5 * time.Second, StickyTimeout: 3 * time.Second, StopTimeout: 10 * time.Second,
	}
	if s.Failover != want {
		t.Errorf("defaults: %+v, want %+v", s.Failover, want)
	}
	c, _ = parseEnv(t, map[string]string{
		"LETHE_KAFKA_SESSION_TIMEOUT": "10s", "LETHE_KAFKA_HEARTBEAT_INTERVAL": "2s", "LETHE_KAFKA_REBALANCE_TIMEOUT": "20s",
		"LETHE_WORKFLOW_TASK_TIMEOUT": "8s", "LETHE_STICKY_TIMEOUT": "1500ms", "LETHE_WORKER_STOP_TIMEOUT": "25s",
	})
	if s, err = c.roleSettings(); err != nil {
		t.Fatalf("set: %v", err)
	}
	want = roles.Failover{
		KafkaGroup:          kafkasec.GroupTimeouts{Session: 10 * time.Second, Heartbeat: 2 * time.Second, Rebalance: 20 * time.Second},
		WorkflowTaskTimeout: 8 * time.Second, StickyTimeout: 1500 * time.Millisecond, StopTimeout: 25 * time.Second,
	}
	if s.Failover != want {
		t.Errorf("set: %+v, want %+v", s.Failover, want)
	}
	for _, tt := range []struct {
		env     map[string]string
		blame   string
		message string
	}{
		{map[string]string{"LETHE_KAFKA_SESSION_TIMEOUT": "soon"}, "LETHE_KAFKA_SESSION_TIMEOUT", "positive duration"},
		{map[string]string{"LETHE_KAFKA_SESSION_TIMEOUT": "0"}, "LETHE_KAFKA_SESSION_TIMEOUT", "positive duration"},
		{map[string]string{"LETHE_KAFKA_SESSION_TIMEOUT": "500ms", "LETHE_KAFKA_HEARTBEAT_INTERVAL": "100ms"}, "LETHE_KAFKA_SESSION_TIMEOUT", "at least 1s"},
		{map[string]string{"LETHE_KAFKA_HEARTBEAT_INTERVAL": "-1s"}, "LETHE_KAFKA_HEARTBEAT_INTERVAL", "positive duration"},
		{map[string]string{"LETHE_KAFKA_HEARTBEAT_INTERVAL": "3s"}, "LETHE_KAFKA_HEARTBEAT_INTERVAL", "a third of LETHE_KAFKA_SESSION_TIMEOUT"},
		{map[string]string{"LETHE_KAFKA_REBALANCE_TIMEOUT": "1 minute"}, "LETHE_KAFKA_REBALANCE_TIMEOUT", "positive duration"},
		{map[string]string{"LETHE_WORKFLOW_TASK_TIMEOUT": "3m"}, "LETHE_WORKFLOW_TASK_TIMEOUT", "Temporal's limit"},
		{map[string]string{"LETHE_STICKY_TIMEOUT": "0s"}, "LETHE_STICKY_TIMEOUT", "positive duration"},
		{map[string]string{"LETHE_WORKER_STOP_TIMEOUT": "x"}, "LETHE_WORKER_STOP_TIMEOUT", "positive duration"},
	} {
		c, err := parseEnv(t, tt.env)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.roleSettings()
		if err == nil || !strings.Contains(err.Error(), tt.blame) || !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%v: err %v, want one naming %s and saying %q", tt.env, err, tt.blame, tt.message)
		}
	}
}
