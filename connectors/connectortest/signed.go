package connectortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// fixSigned is what a service whose connector mishandles signatures must do.
const fixSigned = "Run the handler through connectors.Run with the credential Lethe issued " +
	"(Config.KeyID and Config.Secret, or LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET), " +
	"and do not send confirmations of your own"

// checkSignedMessages runs a connector with a fresh credential and sends it,
// for one request so that they are handled in this order, an unsigned
// command, a command signed with another secret under the connector's key
// id, and a correctly signed one. Once the last is confirmed, the first two
// must have been dead-lettered without calling the handler, their subjects
// untouched; the confirmation must carry the key id and a signature over
// its value bytes.
func checkSignedMessages(ctx context.Context, e *env) error {
	keyID, secret, err := newCredential()
	if err != nil {
		return err
	}
	_, forger, err := newCredential()
	if err != nil {
		return err
	}
	c, err := e.startSignedConnector(ctx, keyID, hex.EncodeToString(secret))
	if err != nil {
		return err
	}
	defer c.stop()

	unsignedSubject, unsigned, unsignedCount, err := e.seeded(ctx, false)
	if err != nil {
		return err
	}
	forgedSubject, forged, forgedCount, err := e.seeded(ctx, false)
	if err != nil {
		return err
	}
	_, good, _, err := e.seeded(ctx, false)
	if err != nil {
		return err
	}
	forged.RequestID, good.RequestID = unsigned.RequestID, unsigned.RequestID
	if err := c.send(ctx, unsigned, nil); err != nil {
		return err
	}
	if err := c.send(ctx, forged, signWith(keyID, forger)); err != nil {
		return err
	}
	if err := c.send(ctx, good, signWith(keyID, secret)); err != nil {
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
		if n := c.h.calls(refused.cmd.CommandID); n != 0 {
			return fmt.Errorf("the connector with a signing credential called Erase %d times for %s; it must dead-letter it unhandled. %s", n, refused.what, fixSigned)
		}
		if len(c.e.feed.messages(refused.cmd.CommandID)) != 0 {
			return fmt.Errorf("%s was confirmed; it must be dead-lettered and never confirmed. %s", refused.what, fixSigned)
		}
		left, err := e.remaining(ctx, refused.subject)
		if err != nil {
			return err
		}
		if left != refused.count {
			return fmt.Errorf("after %s, Remaining counts %d records of its subject instead of %d: the data changed although the command must not be carried out. %s", refused.what, left, refused.count, fixSigned)
		}
	}
	msgs := c.e.feed.messages(good.CommandID)
	if len(msgs) == 0 {
		return fmt.Errorf("the confirmation of a correctly signed command was seen decoded but not as a message")
	}
	gotKey, _ := connectors.Header(msgs[0], wire.HeaderKeyID)
	sig, _ := connectors.Header(msgs[0], wire.HeaderSignature)
	if gotKey != keyID || !wire.Verify(secret, msgs[0].Value, sig) {
		return fmt.Errorf("the confirmation of a correctly signed command carries %s %q and a signature that does not verify; it must be signed with the connector's credential over its value bytes. %s",
			wire.HeaderKeyID, gotKey, fixSigned)
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
