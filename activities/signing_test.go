package activities

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/wire"
)

// fakeCredentials answers SystemCredentials from a map and counts calls.
type fakeCredentials struct {
	creds map[string][]string
	calls [][]string
}

func (f *fakeCredentials) SystemCredentials(_ context.Context, systems []string, _ time.Time) (map[string][]string, error) {
	f.calls = append(f.calls, slices.Clone(systems))
	out := map[string][]string{}
	for _, s := range systems {
		if ids, ok := f.creds[s]; ok {
			out[s] = ids
		}
	}
	return out, nil
}

func testMaster(t *testing.T) *credential.Master {
	t.Helper()
	m, err := credential.New(bytes.Repeat([]byte{5}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSyncSignsCommandsOfSystemsWithCredentials(t *testing.T) {
	j := &journal{}
	pub := &fakePublisher{j: j}
	creds := &fakeCredentials{creds: map[string][]string{"orders": {"k_00000000000000b2", "k_00000000000000a1"}}}
	master := testMaster(t)
	env := newEnv()
	a := &Activities{Publisher: pub, Ledger: &fakeLedger{j: j}, Credentials: creds, SystemKey: master}
	env.RegisterActivity(a)
	in := SyncInput{
		RequestID: testRequestID,
		Commands: []Outbound{
			{Topic: "lethe.erasure.billing", Command: command(testCommandA, "billing")},
			{Topic: "lethe.erasure.orders", Command: command(testCommandB, "orders")},
		},
	}
	if _, err := env.ExecuteActivity(a.Sync, in); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if len(creds.calls) != 1 || !slices.Equal(creds.calls[0], []string{"billing", "orders"}) {
		t.Errorf("credential lookups %v, want one for [billing orders]", creds.calls)
	}
	billing, orders := pub.calls[0][0], pub.calls[0][1]
	if _, ok := connectors.Header(billing, wire.HeaderSignature); ok {
		t.Error("the command to billing, which has no credential, is signed")
	}
	keyID, _ := connectors.Header(orders, wire.HeaderKeyID)
	sig, _ := connectors.Header(orders, wire.HeaderSignature)
	if keyID != "k_00000000000000b2" {
		t.Errorf("orders' command signed with key %q, want the newest valid k_00000000000000b2", keyID)
	}
	if !wire.Verify(master.Secret(keyID), orders.Value, sig) {
		t.Error("orders' command signature does not verify over its value bytes")
	}
}

func TestSyncNeverSendsUnsignedToASystemWithCredentials(t *testing.T) {
	for _, tc := range []struct {
		name   string
		creds  map[string][]string
		master bool
		code   string
	}{
		{"no valid key", map[string][]string{"orders": {}}, true, "no_valid_credential"},
		{"no system key", map[string][]string{"orders": {"k_00000000000000a1"}}, false, "system_key_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			pub := &fakePublisher{j: j}
			a := &Activities{Publisher: pub, Ledger: &fakeLedger{j: j}, Credentials: &fakeCredentials{creds: tc.creds}}
			if tc.master {
				a.SystemKey = testMaster(t)
			}
			_, err := a.Sync(context.Background(), SyncInput{RequestID: testRequestID,
				Commands: []Outbound{{Topic: "lethe.erasure.orders", Command: command(testCommandB, "orders")}},
				Ledger:   lethe.LedgerDelta{Status: lethe.RequestRunning}})
			if err == nil || !strings.Contains(err.Error(), tc.code) {
				t.Errorf("Sync = %v, want an error naming %s", err, tc.code)
			}
			if lethe.ErrorKind(err) != lethe.KindUnavailable {
				t.Errorf("error kind = %v, want unavailable (retried until fixed)", lethe.ErrorKind(err))
			}
			if len(pub.calls) != 0 || len(j.list()) != 0 {
				t.Errorf("published %d times and wrote %v, want nothing", len(pub.calls), j.list())
			}
		})
	}
}
