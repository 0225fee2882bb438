package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// TestRetryThroughTheCLI is the repair an operator makes from a terminal,
// on the whole stack: a system answers failed, the request ends failed,
// `lethe erasures retry ID` brings it back to running, the system (mended)
// confirms and the request completes; the audit names who retried. Then
// `lethe erasures retry --all` retries, for one system, every request in
// which it failed.
func TestRetryThroughTheCLI(t *testing.T) {
	r := newClientRig(t)
	admin := r.env(r.Token)
	var mended atomic.Bool
	r.connectorWith("vault", connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		if !mended.Load() {
			return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "vault is sealed"}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 4}, nil
	}))
	wantOK(t, "systems put", r.lethe(admin, "systems", "put", "vault", "--identifiers", "email"))

	res := r.lethe(admin, "erasures", "create", "--subject", "email=lin@example.org", "--reason", "gdpr_art17",
		"--wait", "--poll-interval", "20ms")
	if res.code != exitRequestFailed {
		t.Fatalf("create --wait: exit %d, want %d (request failed); stderr %q", res.code, exitRequestFailed, res.stderr)
	}
	id := field(t, res.stdout, "ID")

	mended.Store(true)
	res = r.lethe(admin, "erasures", "retry", id)
	wantOK(t, "erasures retry", res)
	if got := field(t, res.stdout, "STATUS"); got != "running" {
		t.Errorf("erasures retry answered status %q, want running\n%s", got, res.stdout)
	}
	res = r.lethe(admin, "erasures", "get", id, "--wait", "--poll-interval", "20ms")
	wantOK(t, "erasures get --wait", res)
	if got := field(t, res.stdout, "STATUS"); got != "completed" {
		t.Fatalf("the retried request ended %q, want completed\n%s", got, res.stdout)
	}
	sysCols := []string{"SYSTEM", "STATUS", "ATTEMPTS", "RECORDS", "CONFIRMED", "DETAIL"}
	if got := tableRow(t, res.stdout[strings.Index(res.stdout, "SYSTEM "):], "vault", sysCols...); got[1] != "erased" || got[2] != "2" || got[3] != "4" {
		t.Errorf("vault row %q, want erased at attempt 2 with 4 records", got)
	}
	events, err := r.Store.Audit(r.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var requested, redispatched bool
	for _, ev := range events {
		switch {
		case ev.Kind == lethe.AuditRetryRequested && ev.Actor == "token:cli-admin":
			requested = true
		case ev.Kind == lethe.AuditRedispatched && ev.Actor == "token:cli-admin" && ev.System == "vault" && ev.Attempt == 2:
			redispatched = true
		}
	}
	if !requested || !redispatched {
		t.Errorf("audit %+v: want retry_requested and vault's redispatch, both by token:cli-admin", events)
	}
	res = r.lethe(admin, "erasures", "retry", id)
	if res.code != exitRefused || res.stderr != "lethe: 409 nothing_to_retry: no system of the request has failed\n" {
		t.Errorf("retry of a completed request: exit %d, stderr %q; want 2 and nothing_to_retry", res.code, res.stderr)
	}

	// Two more requests fail on vault while it is sealed again.
	mended.Store(false)
	var failed []string
	for _, email := range []string{"a@example.org", "b@example.org"} {
		res := r.lethe(admin, "erasures", "create", "--subject", "email="+email, "--reason", "gdpr_art17",
			"--wait", "--poll-interval", "20ms")
		if res.code != exitRequestFailed {
			t.Fatalf("create --wait: exit %d, want the request failed", res.code)
		}
		failed = append(failed, field(t, res.stdout, "ID"))
	}
	mended.Store(true)
	res = r.lethe(admin, "erasures", "retry", "--all", "--system", "vault", "--limit", "1", "--json")
	wantOK(t, "erasures retry --all", res)
	var bulk struct {
		Retried    int      `json:"retried"`
		RequestIDs []string `json:"request_ids"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &bulk); err != nil {
		t.Fatalf("retry --all --json printed %q: %v", res.stdout, err)
	}
	slices.Sort(failed)
	slices.Sort(bulk.RequestIDs)
	if bulk.Retried != 2 || !slices.Equal(bulk.RequestIDs, failed) {
		t.Errorf("retry --all (one per call) retried %v, want both failed requests %v", bulk.RequestIDs, failed)
	}
	for _, id := range failed {
		if res := r.lethe(admin, "erasures", "get", id, "--wait", "--poll-interval", "20ms"); res.code != exitOK {
			t.Errorf("request %s after the bulk retry: exit %d, want completed", id, res.code)
		}
	}
	if res := r.lethe(admin, "erasures", "retry", id, "--since", "2026-01-01T00:00:00Z"); res.code != exitUsage {
		t.Errorf("--since without --all: exit %d, want %d", res.code, exitUsage)
	}
}
