// Package credential derives the secrets that sign Lethe's Kafka messages.
//
// Each system may be issued credentials: a key id, which PostgreSQL keeps
// with the system's name and the credential's validity, and a secret, which
// nothing stores. The secret is HMAC-SHA256 of the key id under one master
// key (LETHE_SYSTEM_KEY), so the API that issues a credential, the worker
// that signs commands with it and the relay that checks confirmations all
// compute the same secret from the key id alone, and a copy of the database
// reveals no secret.
package credential

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"time"
)

// MinMasterKeyBytes is the shortest master key accepted.
const MinMasterKeyBytes = 32

// DefaultOverlap is how long a system's previous credentials stay valid
// after a new one is issued (LETHE_CREDENTIAL_OVERLAP): the time its
// connector has to be redeployed with the new secret.
const DefaultOverlap = 24 * time.Hour

// derivationLabel separates these secrets from any other use of the master
// key; the version lets a later derivation coexist with this one.
const derivationLabel = "lethe.system-credential.v1:"

var keyIDRe = regexp.MustCompile(`^k_[0-9a-f]{16}$`)

// Master is the master key from which every credential's secret derives.
type Master struct {
	key []byte
}

// New returns the Master of key, which must hold at least MinMasterKeyBytes.
func New(key []byte) (*Master, error) {
	if len(key) < MinMasterKeyBytes {
		return nil, errors.New("system key must be at least 32 bytes")
	}
	return &Master{key: append([]byte(nil), key...)}, nil
}

// ParseMasterKey reads a master key given as hex (64 or more hex digits),
// the form LETHE_SYSTEM_KEY takes.
func ParseMasterKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("system key must be hex")
	}
	if len(b) < MinMasterKeyBytes {
		return nil, errors.New("system key must be at least 32 bytes (64 hex digits)")
	}
	return b, nil
}

// Secret returns the secret of the credential keyID:
// HMAC-SHA256(master, "lethe.system-credential.v1:" + keyID).
func (m *Master) Secret(keyID string) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(derivationLabel))
	h.Write([]byte(keyID))
	return h.Sum(nil)
}

// NewKeyID returns a fresh random key id: "k_" and 16 hex digits. Key ids
// are not secret, but random ones never collide across deployments that
// share a database backup.
func NewKeyID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "k_" + hex.EncodeToString(b[:]), nil
}

// ValidKeyID reports whether s has the form NewKeyID gives. The relay
// checks a header's key id with it before looking it up.
func ValidKeyID(s string) bool { return keyIDRe.MatchString(s) }
