package connectortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// fixSigned is what a service whose connector mishandles signatures must do.
const fixSigned = "With the credential Lethe issued, check the signature of every command and " +
	"dead-letter, unhandled, one unsigned or signed with another key or secret (in pull mode, refuse the whole " +
	"lease answer); sign every confirmation (docs/connectors.md, Signed messages). The Go SDK does both given " +
	"Config.KeyID and Config.Secret (PullConfig's for RunPull), " +
	"or LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET; do not send confirmations of your own"

// checkSignedMessages sends a connector that holds a signing credential, for
// one request so that they are handled in this order, an unsigned command,
// a command signed with another secret under the connector's key id, and a
// correctly signed one. Once the last is confirmed, the first two must have
// been refused: never confirmed, the handler not called (where the kit can
// see it), their subjects' data intact. Every confirmation of the session
// must carry the key id and a signature over its value bytes (the
// session's await checks it).
func checkSignedMessages(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, true)
	if err != nil {
		return err
	}
	defer c.close()

	unsignedSubject, unsigned, unsignedCount, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	forgedSubject, forged, forgedCount, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	_, good, _, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	forged.RequestID, good.RequestID = unsigned.RequestID, unsigned.RequestID
	if err := c.send(ctx, unsigned, signNone); err != nil {
		return err
	}
	if err := c.send(ctx, forged, signForged); err != nil {
		return err
	}
	if err := c.send(ctx, good, signAsLethe); err != nil {
		return err
	}
	if _, err := c.await(ctx, good.CommandID, 1); err != nil {
		return err
	}
	for _, refused := range []struct {
		what    string
		cmd     wire.Command
		subject Subject
		count   int64
	}{{"an unsigned command", unsigned, unsignedSubject, unsignedCount}, {"a command signed with another secret", forged, forgedSubject, forgedCount}} {
		if n, known := c.calls(refused.cmd.CommandID); known && n != 0 {
			return fmt.Errorf("the connector with a signing credential called Erase %d times for %s; it must dead-letter it unhandled. %s", n, refused.what, fixSigned)
		}
		if c.confirmed(refused.cmd.CommandID) != 0 {
			return fmt.Errorf("%s was confirmed; it must be refused (over Kafka, dead-lettered) and never confirmed. %s", refused.what, fixSigned)
		}
		after, intact, err := k.held(ctx, c, refused.subject, refused.count)
		if err != nil {
			return err
		}
		if !intact {
			return fmt.Errorf("after %s, its subject's data changed (%s) although the command must not be carried out. %s", refused.what, change(refused.count, after), fixSigned)
		}
	}
	return nil
}

// newCredential is a key id and secret of the forms Lethe issues.
func newCredential() (keyID string, secret []byte, err error) {
	b := make([]byte, 8+32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("make a test credential: %w", err)
	}
	return "k_" + hex.EncodeToString(b[:8]), b[8:], nil
}

// signWith signs a command's message as Lethe's worker does.
func signWith(keyID string, secret []byte) func(*kafka.Message) {
	return func(m *kafka.Message) {
		m.Headers = append(m.Headers,
			kafka.Header{Key: wire.HeaderKeyID, Value: []byte(keyID)},
			kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(secret, m.Value))})
	}
}
