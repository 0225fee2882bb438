package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/internal/conformance"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// fileShop is a service whose data is a file of lines, one per record,
// each the user id it is held under: what a seed command writes with sh
// alone. The handlers below differ in how they erase from it.
type fileShop struct {
	mu   sync.Mutex
	path string
	// eraseOnDryRun and keepData are the bugs the command must catch.
	eraseOnDryRun, keepData bool
}

func (f *fileShop) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.path)
	if err != nil && !os.IsNotExist(err) {
		return connectors.Result{}, err
	}
	users := req.Values("user_id")
	var kept []string
	var n int64
	for _, line := range strings.Fields(string(b)) {
		if slices.Contains(users, line) {
			n++
			if (!req.DryRun || f.eraseOnDryRun) && !f.keepData {
				continue
			}
		}
		kept = append(kept, line)
	}
	if err := os.WriteFile(f.path, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		return connectors.Result{}, err
	}
	if n == 0 {
		return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
	}
	return connectors.Result{Outcome: wire.OutcomeErased, Records: n}, nil
}

// conformanceRig is a Go connector of system "shop" on its own broker,
// checked by `lethe conformance` as any connector would be: over the wire,
// seeded by a shell command.
type conformanceRig struct {
	brokers []string
	data    string
	keyID   string
	secret  string
}

func newConformanceRig(t *testing.T) *conformanceRig {
	t.Helper()
	brokers, _ := testenv.Kafka(t, wire.ConfirmationsTopic)
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return &conformanceRig{brokers: brokers, data: filepath.Join(t.TempDir(), "shop.txt"),
		keyID: "k_conformance", secret: hex.EncodeToString(b)}
}

// start runs shop as the connector until the test ends; signed gives it
// the rig's credential.
func (r *conformanceRig) start(t *testing.T, shop *fileShop, signed bool) {
	t.Helper()
	shop.path = r.data
	cfg := connectors.Config{Brokers: r.brokers, System: "shop", Logger: slog.New(slog.DiscardHandler)}
	if signed {
		cfg.KeyID, cfg.Secret = r.keyID, r.secret
	}
	runUntilEnd(t, "connectors.Run", func(ctx context.Context) error { return connectors.Run(ctx, cfg, shop) })
}

// runUntilEnd runs fn until the test ends, then cancels its context and
// fails the test if fn returned an error.
func runUntilEnd(t *testing.T, what string, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
}

// startLax runs shop as a connector that signs its confirmations with the
// rig's credential but never checks a command's signature: the forgery
// signed_messages must catch. It dead-letters what it cannot decode, as the
// wire format asks. With remember it answers a repeated command_id as it
// did the first time; without, it erases again.
func (r *conformanceRig) startLax(t *testing.T, shop *fileShop, remember bool) {
	t.Helper()
	shop.path = r.data
	secret, err := hex.DecodeString(r.secret)
	if err != nil {
		t.Fatal(err)
	}
	topic := wire.DefaultTopic("shop")
	ctx, cancel := context.WithCancel(context.Background())
	if err := connectors.EnsureTopics(ctx, r.brokers, connectors.DefaultPartitions, topic, wire.DLQTopic(topic)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	rd := connectors.NewReader(r.brokers, "lethe-connector-shop", topic, log)
	w := connectors.NewWriter(r.brokers)
	done := make(chan struct{})
	answered := map[string]connectors.Result{}
	go func() {
		defer close(done)
		for {
			m, err := rd.FetchMessage(ctx)
			if err != nil {
				return
			}
			out := connectors.DeadLetter(m, "malformed")
			if cmd, err := wire.DecodeCommand(m.Value); err == nil {
				res, seen := answered[cmd.CommandID]
				if !seen || !remember {
					if res, err = shop.Erase(ctx, connectors.Request{CommandID: cmd.CommandID, Identifiers: cmd.Identifiers, DryRun: cmd.DryRun}); err != nil {
						return
					}
					answered[cmd.CommandID] = res
				}
				if out, err = connectors.EncodeConfirmation(connectors.NewConfirmation(cmd, res, time.Now())); err != nil {
					return
				}
				signWithSecret(&out, r.keyID, secret)
			}
			if connectors.WriteAll(ctx, w, log, out) != nil || rd.CommitMessages(ctx, m) != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		rd.Close()
		w.Close()
	})
}

// signWithSecret adds the signature headers to m.
func signWithSecret(m *kafka.Message, keyID string, secret []byte) {
	m.Headers = append(m.Headers, kafka.Header{Key: wire.HeaderKeyID, Value: []byte(keyID)},
		kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(secret, m.Value))})
}

// conformance runs the command with the rig's brokers, its seed command
// and, when withSecret, its credential (from the environment, as the Go
// SDK reads it).
func (r *conformanceRig) conformance(t *testing.T, seed, withSecret bool, extra ...string) (string, error) {
	t.Helper()
	args := []string{"conformance", "--system", "shop", "--kafka-brokers", strings.Join(r.brokers, ","), "--timeout", "30s"}
	if seed {
		args = append(args, "--seed", `echo "$LETHE_SEED_VALUE" >> '`+r.data+`' && echo "$LETHE_SEED_VALUE" >> '`+r.data+`'`)
	}
	args = append(args, extra...)
	env := map[string]string{}
	if withSecret {
		env[connectors.EnvKeyID], env[connectors.EnvSecret] = r.keyID, r.secret
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &stdout, io.Discard)
	t.Logf("lethe %s:\n%s", strings.Join(args[:3], " "), stdout.String())
	return stdout.String(), err
}

// wantLines asserts that out has a PASS line for each of pass and a FAIL
// line saying want for each check of fail.
func wantLines(t *testing.T, out string, pass []string, fail map[string]string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, c := range pass {
		if !slices.Contains(lines, "PASS "+c) {
			t.Errorf("no line %q", "PASS "+c)
		}
	}
	for c, want := range fail {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, "FAIL "+c+": ") && strings.Contains(l, want)
		}
		if !found {
			t.Errorf("no line FAIL %s: …%s…", c, want)
		}
	}
}

func TestConformancePassesConformantConnector(t *testing.T) {
	t.Parallel()
	r := newConformanceRig(t)
	r.start(t, &fileShop{}, true)
	out, err := r.conformance(t, true, true, "--json")
	if err != nil {
		t.Fatalf("lethe conformance = %v, want success", err)
	}
	rep, got := allPassed(t, out)
	if !rep.Passed || rep.System != "shop" || !slices.Equal(got, connectortest.WireChecks) {
		t.Errorf("report = %+v, want system shop passed with checks %v", rep, connectortest.WireChecks)
	}
}

// allPassed decodes the --json report out, fails t for every check in it
// that did not pass cleanly, and returns it with its checks' names in order.
func allPassed(t *testing.T, out string) (conformance.Report, []string) {
	t.Helper()
	var rep conformance.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	var got []string
	for _, c := range rep.Checks {
		got = append(got, c.Check)
		if !c.Passed || c.Problem != "" {
			t.Errorf("check %s failed: %s", c.Check, c.Problem)
		}
	}
	return rep, got
}

// The connectors of startLax.
const (
	laxRemembers = 1 + iota
	laxForgets
)

func TestConformanceFailsBrokenConnectors(t *testing.T) {
	t.Parallel()
	all := connectortest.WireChecks
	without := func(names ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(c string) bool { return slices.Contains(names, c) })
	}
	cases := []struct {
		name   string
		shop   *fileShop
		signed bool
		lax    int // 0: the SDK; laxRemembers or laxForgets: startLax
		pass   []string
		fail   map[string]string
	}{
		{"erases on dry run", &fileShop{eraseOnDryRun: true}, true, 0, without(connectortest.CheckDryRun),
			map[string]string{connectortest.CheckDryRun: "a dry run changed the service's data (a later erasure of it found 0 records)"}},
		{"keeps the data it reports erased", &fileShop{keepData: true}, true, 0,
			[]string{connectortest.CheckUnknownType, connectortest.CheckMalformed},
			map[string]string{
				connectortest.CheckEraseLeavesNothing: "a fresh command for a subject already confirmed erased was answered erased with 2 records",
				connectortest.CheckDryRun:             "a fresh command for a subject already confirmed erased was answered erased",
			}},
		{"accepts forged commands", &fileShop{}, true, laxRemembers, without(connectortest.CheckSignedMessages),
			map[string]string{connectortest.CheckSignedMessages: "an unsigned command was confirmed; it must be refused (over Kafka, dead-lettered) and never confirmed"}},
		{"runs a repeated command again", &fileShop{}, true, laxForgets, []string{connectortest.CheckEraseLeavesNothing, connectortest.CheckDryRun},
			map[string]string{connectortest.CheckRepeatedCommand: "was confirmed not_found with 0 records after erased with 2"}},
		{"ignores its credential", &fileShop{}, false, 0, nil,
			map[string]string{
				connectortest.CheckSignedMessages:     "signature that does not verify",
				connectortest.CheckEraseLeavesNothing: "signature that does not verify",
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newConformanceRig(t)
			if tc.lax != 0 {
				r.startLax(t, tc.shop, tc.lax == laxRemembers)
			} else {
				r.start(t, tc.shop, tc.signed)
			}
			out, err := r.conformance(t, true, true)
			if err == nil || !strings.Contains(err.Error(), "checks failed for system shop") {
				t.Errorf("lethe conformance = %v, want it to fail", err)
			}
			if exitCode(err) == exitOK {
				t.Error("exit status 0, want non-zero")
			}
			wantLines(t, out, tc.pass, tc.fail)
		})
	}
}

func TestConformanceWithoutSeedOrCredentialSaysWhatCannotRun(t *testing.T) {
	t.Parallel()
	r := newConformanceRig(t)
	r.start(t, &fileShop{}, false)
	out, err := r.conformance(t, false, false)
	if err == nil {
		t.Fatal("lethe conformance succeeded without --seed, want it to fail")
	}
	wantLines(t, out, []string{connectortest.CheckUnknownType, connectortest.CheckMalformed}, map[string]string{
		connectortest.CheckEraseLeavesNothing: "pass --seed CMD",
		connectortest.CheckRepeatedCommand:    "pass --seed CMD",
		connectortest.CheckUnknownSubject:     "pass --seed CMD",
		connectortest.CheckDryRun:             "pass --seed CMD",
		connectortest.CheckSignedMessages:     "pass --key-id and --secret",
	})
	if !strings.Contains(out, "2 of 7 checks passed") {
		t.Errorf("no summary saying 2 of 7 checks passed")
	}
}

func TestConformanceCommandErrors(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"conformance"}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--system NAME is required") {
		t.Errorf("without --system: %v, want it to say --system is required", err)
	}
}
