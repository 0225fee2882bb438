package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
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
