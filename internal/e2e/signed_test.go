package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/wire"
)

// signedEnv, set to 1, runs every end-to-end test on a signed stack, as
// stackOptions.Signed does for one: `LETHE_E2E_SIGNED=1 go test ./internal/e2e/`.
const signedEnv = "LETHE_E2E_SIGNED"

// systemCredential is a signing credential as POST
// /v1/systems/{name}/credentials answers it: the secret is hex.
type systemCredential struct {
	KeyID  string `json:"key_id"`
	Secret string `json:"secret"`
}

// randomSystemKey is a fresh master key, so that no test depends on the
// secrets of another.
func randomSystemKey(t testing.TB) *credential.Master {
	t.Helper()
	key := make([]byte, credential.MinMasterKeyBytes)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	m, err := credential.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// issueCredential issues a system a signing credential through the API,
// remembers it as the one runConnector hands the system's connector, and
// returns it.
func (s *stack) issueCredential(system string) systemCredential {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/systems/"+system+"/credentials", nil)
	if r.Status != http.StatusCreated {
		s.t.Fatalf("POST /v1/systems/%s/credentials = %d %s", system, r.Status, r.Body)
	}
	var c systemCredential
	r.Decode(s.t, &c)
	if _, err := hex.DecodeString(c.Secret); err != nil || c.KeyID == "" {
		s.t.Fatalf("POST /v1/systems/%s/credentials answered key %q and a secret that is not hex", system, c.KeyID)
	}
	s.setCredential(system, c)
	return c
}

// setCredential records a system's credential, for tests that issue it
// through the API with calls of their own, as the scale test does from
// many goroutines.
func (s *stack) setCredential(system string, c systemCredential) {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if s.creds == nil {
		s.creds = map[string]systemCredential{}
	}
	s.creds[system] = c
}

// credential returns the last credential issued to a system, if any.
func (s *stack) credential(system string) (systemCredential, bool) {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	c, ok := s.creds[system]
	return c, ok
}

// TestSecureSignedErasure erases a subject on a stack that is both secure
// and signed, whatever the environment says: SASL/SCRAM and ACLs on the
// broker, a credential per system, every confirmation required to be
// signed. The accounts system is reached by user_id, analytics only by the
// device id accounts reveals; both confirmations count, and each command
// on the wire carries the system's key id and a signature of its value
// bytes under the secret the API issued.
func TestSecureSignedErasure(t *testing.T) {
	s := newStack(t, stackOptions{Secure: true, Signed: true})
	if err := demo.Migrate(s.ctx, s.DB); err != nil {
		t.Fatal(err)
	}
	subject, err := demo.Seed(s.ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	systems := []string{demo.SystemAccounts, demo.SystemAnalytics}
	handlers := demo.Handlers(s.DB)
	for _, sys := range demo.Systems() {
		if sys.Name == demo.SystemAccounts || sys.Name == demo.SystemAnalytics {
			s.putSystem(sys)
			s.runConnector(sys.Name, handlers[sys.Name])
		}
	}

	e := s.submit(subjectMap(subject.Identifiers()))
	done := s.await(e.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("status = %s, want completed (%s)", done.Status, describe(done))
	}
	all := subject.AllIdentifiers()
	for _, sys := range systems {
		if p := systemByName(t, done, sys); p.Status != lethe.SystemErased || p.Records == 0 {
			t.Errorf("%s = %s with %d records, want erased with the records of its signed confirmation", sys, p.Status, p.Records)
		}
		if got := remaining(t, s, sys, all); got != 0 {
			t.Errorf("%s still holds %d rows of the subject", sys, got)
		}
		cred, ok := s.credential(sys)
		if !ok {
			t.Fatalf("the signed stack issued %s no credential", sys)
		}
		checkSignedCommand(t, s, sys, cred)
	}
	var refused int
	if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM audit_events WHERE kind = 'bad_signature'`).Scan(&refused); err != nil || refused != 0 {
		t.Errorf("bad_signature audit events = %d (%v), want none", refused, err)
	}
}

// checkSignedCommand reads the first command on a system's topic, as a
// principal that may read anything, and fails unless it carries cred's key
// id and a signature of its value under cred's secret.
func checkSignedCommand(t *testing.T, s *stack, system string, cred systemCredential) {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	r := kafkax.Cluster{Brokers: s.Brokers, Security: s.KafkaAdmin}.Reader("e2e-wire-"+system, wire.DefaultTopic(system), silentLogger())
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("read a command of %s: %v", system, err)
	}
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers[wire.HeaderKeyID] != cred.KeyID {
		t.Errorf("%s command's %s = %q, want the issued %q", system, wire.HeaderKeyID, headers[wire.HeaderKeyID], cred.KeyID)
	}
	secret, err := hex.DecodeString(cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if !wire.Verify(secret, m.Value, headers[wire.HeaderSignature]) {
		t.Errorf("%s command's %s does not sign its value under the issued secret", system, wire.HeaderSignature)
	}
}
