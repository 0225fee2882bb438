package connectors_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

const (
	testKeyID     = "k_00000000000000c1"
	testSecretHex = "4c657468652074657374207665637420736563726574206f662033322062797465"
)

func signCommand(t *testing.T, m kafka.Message, keyID, secretHex string) kafka.Message {
	t.Helper()
	secret, err := hex.DecodeString(secretHex)
	if err != nil {
		t.Fatal(err)
	}
	m.Headers = append(append([]kafka.Header(nil), m.Headers...),
		kafka.Header{Key: wire.HeaderKeyID, Value: []byte(keyID)},
		kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(secret, m.Value))})
	return m
}

// TestRunWithSecretRefusesUnsignedCommands gives a connector its credential
// through LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET and injects,
// on its topic, an unsigned command, one signed with another key id and
// one whose value was changed after signing: none reaches the handler,
// each is dead-lettered with its reason, and the one well-signed command
// is confirmed with a signed confirmation.
func TestRunWithSecretRefusesUnsignedCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	t.Setenv(connectors.EnvKeyID, testKeyID)
	t.Setenv(connectors.EnvSecret, testSecretHex)
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	start(t, cfg, h)

	requestID := uuid.NewString()
	unsigned, forged, flipped, good := newCommand(requestID), newCommand(requestID), newCommand(requestID), newCommand(requestID)
	flippedMsg := signCommand(t, commandMessage(t, flipped), testKeyID, testSecretHex)
	flippedMsg.Value = bytes.Replace(flippedMsg.Value, []byte(`"attempt":1`), []byte(`"attempt":2`), 1)
	produce(ctx, t, brokers,
		commandMessage(t, unsigned),
		signCommand(t, commandMessage(t, forged), "k_00000000000000f0", testSecretHex),
		flippedMsg,
		signCommand(t, commandMessage(t, good), testKeyID, testSecretHex))

	conf := newConsumer(t, brokers, wire.ConfirmationsTopic).next(ctx, t)
	c, err := wire.DecodeConfirmation(conf.Value)
	if err != nil || c.CommandID != good.CommandID {
		t.Fatalf("first confirmation = %+v, %v; want the well-signed command's", c, err)
	}
	secret, _ := hex.DecodeString(testSecretHex)
	keyID, _ := connectors.Header(conf, wire.HeaderKeyID)
	sig, _ := connectors.Header(conf, wire.HeaderSignature)
	if keyID != testKeyID || !wire.Verify(secret, conf.Value, sig) {
		t.Errorf("confirmation signed with key %q, signature %q: want %s and a signature over its value", keyID, sig, testKeyID)
	}

	dlq := newConsumer(t, brokers, wire.DLQTopic(topic))
	for _, want := range []struct {
		cmd    wire.Command
		reason string
	}{{unsigned, "unsigned"}, {forged, "bad_signature"}, {flipped, "bad_signature"}} {
		m := dlq.next(ctx, t)
		if !bytes.Contains(m.Value, []byte(want.cmd.CommandID)) {
			t.Errorf("dead letter %q, want command %s", m.Value, want.cmd.CommandID)
		}
		if r, _ := connectors.Header(m, wire.HeaderDLQReason); !strings.HasPrefix(r, want.reason) {
			t.Errorf("dead-letter reason %q, want it to start with %s", r, want.reason)
		}
		if n := h.count(want.cmd.CommandID); n != 0 {
			t.Errorf("handler called %d times for a %s command, want never", n, want.reason)
		}
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.deadLettered[connectors.DLQUnsigned] != 1 || obs.deadLettered[connectors.DLQBadSignature] != 2 {
		t.Errorf("observer saw dead letters %v, want 1 unsigned and 2 bad_signature", obs.deadLettered)
	}
}

func TestConfigValidatesCredential(t *testing.T) {
	base := connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system}
	for _, tc := range []struct {
		name, keyID, secret string
		ok                  bool
	}{
		{"none", "", "", true},
		{"both", testKeyID, testSecretHex, true},
		{"a key id alone", testKeyID, "", false},
		{"a secret alone", "", testSecretHex, false},
		{"a secret not hex", testKeyID, strings.Repeat("zz", 32), false},
		{"a short secret", testKeyID, "abcd", false},
	} {
		cfg := base
		cfg.KeyID, cfg.Secret = tc.keyID, tc.secret
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), testSecretHex) {
			t.Errorf("%s: the error quotes the secret", tc.name)
		}
	}
}

func TestSigningCredentialBuild(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"GOOD": testSecretHex, "SHORT": "abcd"}[k]
	}
	var none *connectors.SigningCredential
	if id, s, err := none.Build(env); id != "" || s != "" || err != nil {
		t.Errorf("nil block: %q %q %v, want nothing", id, s, err)
	}
	id, s, err := (&connectors.SigningCredential{KeyID: testKeyID, SecretEnv: "GOOD"}).Build(env)
	if id != testKeyID || s != testSecretHex || err != nil {
		t.Errorf("good block: %q, secret given %v, %v", id, s == testSecretHex, err)
	}
	for _, tc := range []struct {
		block connectors.SigningCredential
		want  string
	}{
		{connectors.SigningCredential{SecretEnv: "GOOD"}, "signing.key_id"},
		{connectors.SigningCredential{KeyID: testKeyID}, "signing.secret_env"},
		{connectors.SigningCredential{KeyID: testKeyID, SecretEnv: "1BAD"}, "signing.secret_env"},
		{connectors.SigningCredential{KeyID: testKeyID, SecretEnv: "UNSET"}, "$UNSET"},
		{connectors.SigningCredential{KeyID: testKeyID, SecretEnv: "SHORT"}, "$SHORT"},
	} {
		if _, _, err := tc.block.Build(env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.block, err, tc.want)
		}
	}
}
