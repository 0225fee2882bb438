package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/wire"
)

// pullRig is a pull-mode connector of system "shop" polling the stand-in
// `lethe conformance --pull` serves on a free local port.
type pullRig struct {
	addr, data, keyID, secret string
}

func newPullRig(t *testing.T) *pullRig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return &pullRig{addr: addr, data: filepath.Join(t.TempDir(), "shop.txt"), keyID: "k_pull", secret: hex.EncodeToString(b)}
}

// startSDK runs shop through connectors.RunPull until the test ends.
func (r *pullRig) startSDK(t *testing.T, shop *fileShop) {
	t.Helper()
	shop.path = r.data
	cfg := connectors.PullConfig{URL: "http://" + r.addr, System: "shop", Token: "tok", KeyID: r.keyID, Secret: r.secret,
		Wait: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	runUntilEnd(t, "connectors.RunPull", func(ctx context.Context) error { return connectors.RunPull(ctx, cfg, shop) })
}

// startLax runs shop as a pull connector that signs its confirmations but
// never checks a lease answer's signature: the forgery signed_messages
// must catch. It remembers the commands it answered. With lenient it also
// acts on items that are not valid commands, as long as they are JSON.
func (r *pullRig) startLax(t *testing.T, shop *fileShop, lenient bool) {
	t.Helper()
	shop.path = r.data
	secret, _ := hex.DecodeString(r.secret)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	answered := map[string]connectors.Result{}
	base := "http://" + r.addr + "/v1/systems/shop"
	do := func(req *http.Request) ([]byte, bool) {
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			return nil, false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b, resp.StatusCode/100 == 2
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/commands?wait=2s", nil)
			body, ok := do(req)
			if !ok {
				continue
			}
			var list struct {
				Items []json.RawMessage `json:"items"`
			}
			_ = json.Unmarshal(body, &list)
			var confs []wire.Confirmation
			for _, raw := range list.Items {
				cmd, err := wire.DecodeCommand(raw)
				if err != nil && (!lenient || json.Unmarshal(raw, &cmd) != nil) {
					continue
				}
				res, seen := answered[cmd.CommandID]
				if !seen {
					if res, err = shop.Erase(ctx, connectors.Request{CommandID: cmd.CommandID, Identifiers: cmd.Identifiers, DryRun: cmd.DryRun}); err != nil {
						return
					}
					answered[cmd.CommandID] = res
				}
				confs = append(confs, connectors.NewConfirmation(cmd, res, time.Now()))
			}
			if len(confs) == 0 {
				continue
			}
			out, _ := json.Marshal(confs)
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/confirmations", bytes.NewReader(out))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(wire.HeaderKeyID, r.keyID)
			req.Header.Set(wire.HeaderSignature, wire.Sign(secret, out))
			do(req)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// conformance runs `lethe conformance --pull` with the rig's credential
// from the environment and a seed command.
func (r *pullRig) conformance(t *testing.T, extra ...string) (string, string, error) {
	t.Helper()
	args := append([]string{"conformance", "--pull", "--system", "shop", "--listen", r.addr, "--token", "tok", "--timeout", "20s",
		"--seed", `echo "$LETHE_SEED_VALUE" >> '` + r.data + `' && echo "$LETHE_SEED_VALUE" >> '` + r.data + `'`}, extra...)
	env := map[string]string{connectors.EnvKeyID: r.keyID, connectors.EnvSecret: r.secret}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
	t.Logf("lethe conformance --pull:\n%s%s", stderr.String(), stdout.String())
	return stdout.String(), stderr.String(), err
}

func TestConformancePullPassesRunPull(t *testing.T) {
	t.Parallel()
	r := newPullRig(t)
	r.startSDK(t, &fileShop{})
	out, stderr, err := r.conformance(t, "--json")
	if err != nil {
		t.Fatalf("lethe conformance --pull = %v, want success", err)
	}
	if !strings.Contains(stderr, "LETHE_API_URL=http://"+r.addr+" LETHE_TOKEN=tok") {
		t.Errorf("stderr does not tell how to point the connector at the stand-in: %q", stderr)
	}
	rep, got := allPassed(t, out)
	if !rep.Passed || !slices.Equal(got, connectortest.PullChecks) {
		t.Errorf("report = %+v, want passed with checks %v", rep, connectortest.PullChecks)
	}
}

func TestConformancePullFailsBrokenConnectors(t *testing.T) {
	t.Parallel()
	all := connectortest.PullChecks
	without := func(names ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(c string) bool { return slices.Contains(names, c) })
	}
	t.Run("ignores the answer's signature", func(t *testing.T) {
		t.Parallel()
		r := newPullRig(t)
		r.startLax(t, &fileShop{}, false)
		out, _, err := r.conformance(t)
		if err == nil || exitCode(err) == exitOK {
			t.Errorf("lethe conformance --pull = %v, want it to fail", err)
		}
		wantLines(t, out, without(connectortest.CheckSignedMessages),
			map[string]string{connectortest.CheckSignedMessages: "an unsigned command was confirmed"})
	})
	t.Run("acts on an invalid item", func(t *testing.T) {
		t.Parallel()
		r := newPullRig(t)
		r.startLax(t, &fileShop{}, true)
		out, _, err := r.conformance(t)
		if err == nil {
			t.Error("lethe conformance --pull succeeded, want it to fail")
		}
		wantLines(t, out, without(connectortest.CheckSignedMessages, connectortest.CheckMalformed),
			map[string]string{connectortest.CheckMalformed: "a lease item that is not a valid command (it has no identifiers) was confirmed 1 time(s)"})
	})
	t.Run("posts unsigned confirmations", func(t *testing.T) {
		t.Parallel()
		r := newPullRig(t)
		shop := &fileShop{path: r.data}
		cfg := connectors.PullConfig{URL: "http://" + r.addr, System: "shop", Token: "tok", Wait: 2 * time.Second,
			Logger: slog.New(slog.DiscardHandler)}
		// RunPull reads no credential from the test's environment, which
		// sets none.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- connectors.RunPull(ctx, cfg, shop) }()
		defer func() { cancel(); <-done }()
		// The refused post is retried for ever (no confirmation is
		// dropped), so the later checks only time out: keep them short.
		out, _, err := r.conformance(t, "--timeout", "3s")
		if err == nil {
			t.Error("lethe conformance --pull succeeded, want it to fail")
		}
		wantLines(t, out, nil, map[string]string{
			connectortest.CheckEraseLeavesNothing: "was posted without lethe-key-id",
			connectortest.CheckSignedMessages:     "no confirmation within 3s",
		})
	})
	t.Run("erases on dry run", func(t *testing.T) {
		t.Parallel()
		r := newPullRig(t)
		r.startSDK(t, &fileShop{eraseOnDryRun: true})
		out, _, err := r.conformance(t)
		if err == nil {
			t.Error("lethe conformance --pull succeeded, want it to fail")
		}
		wantLines(t, out, without(connectortest.CheckDryRun),
			map[string]string{connectortest.CheckDryRun: "a dry run changed the service's data"})
	})
}
