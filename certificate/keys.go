package certificate

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// KeyID names a public key in certificates and in GET /v1/keys: the first
// 16 hex digits of the SHA-256 of its 32 bytes. Deriving it from the key
// means nobody has to keep a name and a key in step, and a verifier can
// recompute it from the key it trusts.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Signer signs certificates with one Ed25519 private key.
type Signer struct {
	priv ed25519.PrivateKey
	kid  string
}

// NewSigner builds a signer from a 32-byte Ed25519 seed.
func NewSigner(seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("an Ed25519 seed is %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return &Signer{priv: priv, kid: KeyID(priv.Public().(ed25519.PublicKey))}, nil
}

// ParseSigningKey reads the seed as LETHE_SIGNING_KEY holds it: 64 hex digits.
func ParseSigningKey(s string) (*Signer, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*ed25519.SeedSize {
		return nil, fmt.Errorf("want an Ed25519 seed of %d hex digits (openssl rand -hex 32), got %d characters", 2*ed25519.SeedSize, len(s))
	}
	seed, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("the Ed25519 seed is not hex")
	}
	return NewSigner(seed)
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.kid }

// Public is the key that verifies the signer's certificates.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Sign fills in c's signature block and returns c's canonical form.
func (s *Signer) Sign(c *Certificate) ([]byte, error) {
	c.Signature = Signature{Algorithm: Algorithm, KeyID: s.kid}
	msg, err := signedBytes(c)
	if err != nil {
		return nil, err
	}
	c.Signature.Value = s.sign(msg)
	return Encode(c)
}

// sign is the base64 signature of msg, the form signature blocks hold.
func (s *Signer) sign(msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg))
}

// ParsePublicKey reads a 32-byte Ed25519 public key written as 64 hex
// digits or in base64 (standard or URL alphabet, padded or not), the forms
// GET /v1/keys and operators use.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, errors.New("not an Ed25519 public key: want 64 hex digits or the 32 bytes in base64")
}

// ParsePublicKeys reads a comma-separated list of public keys, as
// LETHE_SIGNING_KEYS_RETIRED holds them; empty entries are skipped.
func ParsePublicKeys(list string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for i, part := range strings.Split(list, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, err := ParsePublicKey(part)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// KeySet is the document GET /v1/keys serves: the keys that verify this
// deployment's certificates, the active one first.
type KeySet struct {
	Keys []PublicKey `json:"keys"`
}

// PublicKey is one entry of a KeySet.
type PublicKey struct {
	KeyID     string `json:"kid"`
	Algorithm string `json:"alg"`
	// PublicKey is the 32-byte key in standard base64.
	PublicKey string `json:"public_key"`
	// Active is true for the key that signs new certificates; retired keys
	// verify the certificates they signed before a rotation.
	Active bool `json:"active"`
}

// Keys builds the key set of an active signer (nil when none is
// configured) and the retired public keys; a retired key equal to the
// active one is listed once.
func Keys(active *Signer, retired []ed25519.PublicKey) KeySet {
	set := KeySet{Keys: []PublicKey{}}
	seen := map[string]bool{}
	add := func(k ed25519.PublicKey, isActive bool) {
		kid := KeyID(k)
		if seen[kid] {
			return
		}
		seen[kid] = true
		set.Keys = append(set.Keys, PublicKey{
			KeyID: kid, Algorithm: Algorithm,
			PublicKey: base64.StdEncoding.EncodeToString(k), Active: isActive,
		})
	}
	if active != nil {
		add(active.Public(), true)
	}
	for _, k := range retired {
		add(k, false)
	}
	return set
}

// ParseKeySet reads a GET /v1/keys document and returns its Ed25519 keys,
// checking that each entry's kid is its key's id.
func ParseKeySet(b []byte) ([]ed25519.PublicKey, error) {
	var set KeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var out []ed25519.PublicKey
	for i, k := range set.Keys {
		if k.Algorithm != Algorithm {
			continue
		}
		pub, err := ParsePublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("key set entry %d: %w", i+1, err)
		}
		if KeyID(pub) != k.KeyID {
			return nil, fmt.Errorf("key set entry %d: kid %q does not name its key", i+1, k.KeyID)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("key set has no Ed25519 key")
	}
	return out, nil
}
