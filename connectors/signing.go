package connectors

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// Environment variables Run reads a service's signing credential from when
// Config.Secret and Config.KeyID are both empty, so that a secret can stay
// out of the service's code and configuration files.
const (
	EnvSecret = "LETHE_CONNECTOR_SECRET"
	EnvKeyID  = "LETHE_CONNECTOR_KEY_ID"
)

// The reasons a command is dead-lettered for its signature, reported to
// Observer.CommandDeadLettered and in the wire.HeaderDLQReason header.
const (
	// DLQUnsigned: the connector has a secret and the command carries no
	// signature headers.
	DLQUnsigned = "unsigned"
	// DLQBadSignature: the command is signed with another key id, or its
	// signature does not match its value bytes.
	DLQBadSignature = "bad_signature"
)

// minSecretBytes is the shortest secret accepted: Lethe issues 32 bytes.
const minSecretBytes = 32

// signer holds a connector's credential: it checks the commands Lethe sent
// and signs the confirmations sent back.
type signer struct {
	keyID  string
	secret []byte
}

// newSigner reads a credential as POST /v1/systems/{name}/credentials
// answers it: a key id and a hex secret. Neither set gives a nil signer,
// which checks and signs nothing; one without the other is an error.
func newSigner(keyID, secretHex string) (*signer, error) {
	switch {
	case keyID == "" && secretHex == "":
		return nil, nil
	case keyID == "" || secretHex == "":
		return nil, errors.New("connectors: config: a signing credential needs both a key id and a secret")
	}
	secret, err := hex.DecodeString(secretHex)
	if err != nil || len(secret) < minSecretBytes {
		return nil, fmt.Errorf("connectors: config: the secret of key %q must be hex of at least %d bytes", keyID, minSecretBytes)
	}
	return &signer{keyID: keyID, secret: secret}, nil
}

// check returns why a command may not be handled, or "" when it is signed
// by this connector's credential over its value bytes. The detail names
// headers and key ids only.
func (s *signer) check(m kafka.Message) (reason, detail string) {
	keyID, okKey := Header(m, wire.HeaderKeyID)
	sig, okSig := Header(m, wire.HeaderSignature)
	return s.verify(keyID, okKey, sig, okSig, m.Value)
}

// verify is check for any signed bytes: a Kafka message's value or a pull
// lease's response body, with the signature headers it came with (ok false
// for a missing one).
func (s *signer) verify(keyID string, okKey bool, sig string, okSig bool, body []byte) (reason, detail string) {
	switch {
	case !okKey || !okSig:
		return DLQUnsigned, fmt.Sprintf("unsigned: the connector requires %s and %s", wire.HeaderKeyID, wire.HeaderSignature)
	case keyID != s.keyID:
		return DLQBadSignature, fmt.Sprintf("bad_signature: signed with key %q, not this connector's %q", keyID, s.keyID)
	case !wire.Verify(s.secret, body, sig):
		return DLQBadSignature, "bad_signature: it does not match the signed bytes"
	}
	return "", ""
}

// sign adds the signature headers to a confirmation, over its value bytes
// as they will be written.
func (s *signer) sign(m kafka.Message) kafka.Message {
	m.Headers = append(m.Headers,
		kafka.Header{Key: wire.HeaderKeyID, Value: []byte(s.keyID)},
		kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(s.secret, m.Value))})
	return m
}
