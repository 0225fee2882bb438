package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Headers of signed messages. A command to a system with credentials, and
// every confirmation such a system sends back, carries both: the id of the
// credential that signed it and the signature itself.
const (
	// HeaderKeyID names the credential whose secret signed the message.
	HeaderKeyID = "lethe-key-id"
	// HeaderSignature is Sign(secret, value) of the message's value bytes.
	HeaderSignature = "lethe-signature"
)

// SignatureHexLen is the length of a signature: 32 bytes of HMAC-SHA256 as
// lowercase hex.
const SignatureHexLen = 2 * sha256.Size

// Sign returns the lowercase hex HMAC-SHA256 of value under secret. It is
// computed over the message value exactly as written to Kafka, never over a
// re-encoding, so that a client in any language can check it with the bytes
// it read.
func Sign(secret, value []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(value)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is Sign(secret, value). The comparison
// takes the same time wherever the first difference lies, so a forger
// learns nothing from how long a refusal takes. Only lowercase hex is
// accepted, as Sign writes it.
func Verify(secret, value []byte, signature string) bool {
	if len(signature) != SignatureHexLen {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, value)), []byte(signature))
}
