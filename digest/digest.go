// Package digest turns identifier values into keyed digests. Lethe stores
// these instead of the values: with the key they let a later request, a legal
// hold or a backup restore recognise the same subject, and without the key
// they reveal nothing, not even to someone who can guess likely values.
package digest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// MinKeyBytes is the shortest key accepted: HMAC-SHA256 gains nothing from a
// key longer than its block and loses its point with a short one.
const MinKeyBytes = 32

// Digester computes keyed digests with one secret key.
type Digester struct {
	key []byte
}

// New returns a Digester for key, which must hold at least MinKeyBytes bytes.
func New(key []byte) (*Digester, error) {
	if len(key) < MinKeyBytes {
		return nil, errors.New("subject key must be at least 32 bytes")
	}
	return &Digester{key: append([]byte(nil), key...)}, nil
}

// Sum returns the hex HMAC-SHA256 of an identifier. The type is part of the
// input, so the same value under two types gives two unrelated digests.
func (d *Digester) Sum(idType, value string) string {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(idType))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))
}

// ParseKey reads a key given as hex (64 or more hex digits), the form
// LETHE_SUBJECT_KEY takes.
func ParseKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("subject key must be hex")
	}
	if len(b) < MinKeyBytes {
		return nil, errors.New("subject key must be at least 32 bytes (64 hex digits)")
	}
	return b, nil
}
