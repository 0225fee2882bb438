package lethe_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

func TestDurationJSON(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{
		{72 * time.Hour, `"72h"`},
		{90 * time.Minute, `"1h30m"`},
		{time.Minute, `"1m"`},
		{90 * time.Second, `"1m30s"`},
		{time.Hour + time.Second, `"1h0m1s"`},
	}
	for _, tc := range cases {
		b, err := json.Marshal(lethe.Duration(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("marshal %v = %s, %v; want %s", tc.in, b, err, tc.want)
		}
		var back lethe.Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != tc.in {
			t.Errorf("round trip of %v = %v, %v", tc.in, time.Duration(back), err)
		}
	}
	for _, bad := range []string{`"soon"`, `72`, `""`, `null`} {
		var d lethe.Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil && bad != `null` {
			t.Errorf("unmarshal %s succeeded, want an error", bad)
		}
	}
}

func TestStatuses(t *testing.T) {
	for _, s := range []lethe.RequestStatus{"pending", "running", "completed", "failed", "canceled"} {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if lethe.RequestStatus("done").Valid() {
		t.Error("unknown request status reported valid")
	}
	final := map[lethe.RequestStatus]bool{"pending": false, "running": false, "completed": true, "failed": true, "canceled": true}
	for s, want := range final {
		if s.Final() != want {
			t.Errorf("%s.Final() = %v, want %v", s, s.Final(), want)
		}
	}
	sys := map[lethe.SystemStatus]bool{"pending": false, "dispatched": false, "erased": true, "not_found": true, "retained": true, "failed": true}
	for s, want := range sys {
		if s.Final() != want {
			t.Errorf("%s.Final() = %v, want %v", s, s.Final(), want)
		}
	}
}

func TestNames(t *testing.T) {
	cases := []struct {
		name   string
		system bool
		idType bool
	}{
		{"orders", true, true},
		{"order-service", true, false},
		{"user_id", true, true},
		{"Orders", false, false},
		{"1orders", false, false},
		{"", false, false},
		{"a" + string(make([]byte, 63)), false, false},
	}
	for _, tc := range cases {
		if got := lethe.ValidSystemName(tc.name); got != tc.system {
			t.Errorf("ValidSystemName(%q) = %v, want %v", tc.name, got, tc.system)
		}
		if got := lethe.ValidIdentifierType(tc.name); got != tc.idType {
			t.Errorf("ValidIdentifierType(%q) = %v, want %v", tc.name, got, tc.idType)
		}
	}
}

func TestErrorKindAndCode(t *testing.T) {
	err := fmt.Errorf("put system: %w", lethe.Errorf(lethe.KindNotFound, "system_not_found", "no system %q", "orders"))
	if k := lethe.ErrorKind(err); k != lethe.KindNotFound {
		t.Errorf("kind = %v, want not found", k)
	}
	if c := lethe.ErrorCode(err); c != "system_not_found" {
		t.Errorf("code = %q", c)
	}
	plain := errors.New("boom")
	if lethe.ErrorKind(plain) != lethe.KindInternal || lethe.ErrorCode(plain) != "internal" {
		t.Error("an unclassified error must be internal")
	}
}

func TestLedgerDeltaEmpty(t *testing.T) {
	if !(lethe.LedgerDelta{}).Empty() {
		t.Error("zero delta not empty")
	}
	if (lethe.LedgerDelta{Status: lethe.RequestRunning}).Empty() {
		t.Error("delta with a status reported empty")
	}
	if (lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditReceived}}}).Empty() {
		t.Error("delta with an event reported empty")
	}
}
