// Package certificate issues and verifies certificates of erasure: signed
// JSON documents that state what Lethe did for one finished request (the
// subject as keyed digests, each system's outcome, the times) and anchor
// them in the hash-chained audit. A certificate verifies offline with the
// issuer's Ed25519 public key alone, and only in its canonical form, so that
// changing any byte of the file makes it fail.
//
// A finished batch has one BatchCertificate instead, which signs a Merkle
// root over one Leaf per subject; a Proof shows one subject's leaf is under
// that root without the other subjects.
//
// The package depends on the standard library and the lethe domain package
// only, so that whoever checks certificates can import it without the rest
// of Lethe.
package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-dev/lethe"
)

// Format names the version of the document Lethe issues. Version 2 adds
// created_by; a verifier accepts it and FormatV1, and refuses others.
const Format = "lethe.erasure-certificate.v2"

// FormatV1 names the first version of the document, issued before requests
// recorded who created them. It has no created_by and still verifies: a
// certificate is kept for years and must stay checkable as issued.
const FormatV1 = "lethe.erasure-certificate.v1"

// Algorithm is the only signature algorithm certificates use.
const Algorithm = "Ed25519"

// MaxSize bounds a certificate file, so that verifying reads a bounded
// amount whatever it is handed. A request's certificate grows with its
// systems; 1 MiB holds thousands of them.
const MaxSize = 1 << 20

// Certificate is the document. Its JSON form is fixed by the field order
// and tags below; Encode writes it and Verify accepts nothing else.
type Certificate struct {
	// Format is Format for the certificates Lethe issues now, FormatV1 for
	// those issued before.
	Format    string `json:"format"`
	RequestID string `json:"request_id"`
	// Status is the request's final status: completed, failed or canceled.
	Status string `json:"status"`
	// DryRun marks a request that erased nothing and only reported what it
	// would have erased; its certificate certifies no erasure.
	DryRun bool   `json:"dry_run"`
	Reason string `json:"reason"`
	// CreatedBy is the authenticated principal that created the request
	// (empty when none did). A version 2 document always has it; a version
	// 1 document never does, which nil keeps out of its canonical form.
	CreatedBy *string `json:"created_by,omitempty"`
	// Subject is who was erased, as keyed digests of the identifiers
	// (LETHE_SUBJECT_KEY): matching a subject needs the key, and the
	// certificate holds no identifier value.
	Subject     []Digest  `json:"subject"`
	CreatedAt   time.Time `json:"created_at"`
	Deadline    time.Time `json:"deadline"`
	CompletedAt time.Time `json:"completed_at"`
	Systems     []System  `json:"systems"`
	Audit       Audit     `json:"audit"`
	IssuedAt    time.Time `json:"issued_at"`
	Signature   Signature `json:"signature"`
}

// Digest is one identifier of the subject: its type and keyed digest.
type Digest struct {
	Type   string `json:"type"`
	Digest string `json:"digest"`
}

// System is one targeted system's outcome.
type System struct {
	Name string `json:"name"`
	// Outcome is the system's final status: erased, not_found, retained or
	// failed (or pending/dispatched for a request canceled before it answered).
	Outcome     string     `json:"outcome"`
	Records     int64      `json:"records"`
	Attempts    int        `json:"attempts"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	Detail      string     `json:"detail"`
}

// Audit anchors the certificate in the hash-chained audit: the request's
// last event and the chain's head when the certificate was issued. Whoever
// keeps a certificate can later check that the audit still holds those
// links (`lethe audit verify` reports the head).
type Audit struct {
	RequestLast Link `json:"request_last"`
	ChainHead   Link `json:"chain_head"`
}

// Link is one row of the audit chain: its sequence number and hash.
type Link struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Signature is the Ed25519 signature over the document with Value empty.
type Signature struct {
	Algorithm string `json:"algorithm"`
	// KeyID names the public key that verifies it (see KeyID).
	KeyID string `json:"key_id"`
	// Value is the 64-byte signature in standard base64.
	Value string `json:"value"`
}

// Encode returns the canonical form of c: indented JSON in field order,
// ending with one newline. It is what Lethe serves and stores.
func Encode(c *Certificate) ([]byte, error) {
	b, err := encode(c)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// encode is the canonical form without its final newline.
func encode(c *Certificate) ([]byte, error) { return encodeJSON(c) }

// encodeJSON is the canonical form of any document of this package:
// indented JSON without a final newline.
func encodeJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode certificate: %w", err)
	}
	return b, nil
}

// signedBytes is what the signature covers: the canonical form with the
// signature's value empty (its algorithm and key id are covered) and no
// final newline.
func signedBytes(c *Certificate) ([]byte, error) {
	u := *c
	u.Signature.Value = ""
	return encode(&u)
}

// Verification errors, for callers that tell them apart with errors.Is.
var (
	ErrNotCanonical = errors.New("the file is not the certificate's canonical form: it was changed after signing")
	ErrBadSignature = errors.New("the signature does not match the document")
	ErrUnknownKey   = errors.New("the certificate is signed by a key not among those given")
)

// Verify checks a certificate file against the public keys the caller
// trusts and returns the document and the key that signed it. It accepts
// only the canonical form, optionally without its final newline: any other
// byte sequence fails, even one that parses to the same document. A batch
// certificate fails with ErrBatchCertificate: VerifyBatch checks those.
func Verify(file []byte, keys []ed25519.PublicKey) (*Certificate, ed25519.PublicKey, error) {
	body, err := canonicalBody(file)
	if err != nil {
		return nil, nil, err
	}
	if FormatOf(body) == BatchFormat {
		return nil, nil, fmt.Errorf("%w: verify it with VerifyBatch", ErrBatchCertificate)
	}
	var c Certificate
	if err := decodeStrict(body, &c); err != nil {
		return nil, nil, err
	}
	canonical, err := encode(&c)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(canonical, body) {
		return nil, nil, ErrNotCanonical
	}
	switch {
	case c.Format == Format && c.CreatedBy == nil:
		return nil, nil, fmt.Errorf("certificate format %q needs created_by", c.Format)
	case c.Format == FormatV1 && c.CreatedBy != nil:
		return nil, nil, fmt.Errorf("certificate format %q has no created_by", c.Format)
	case c.Format != Format && c.Format != FormatV1:
		return nil, nil, fmt.Errorf("certificate format %q is not %q or %q", c.Format, Format, FormatV1)
	}
	msg, err := signedBytes(&c)
	if err != nil {
		return nil, nil, err
	}
	key, err := checkSignature(c.Signature, msg, keys)
	if err != nil {
		return nil, nil, err
	}
	return &c, key, nil
}

// checkSignature finds the key the signature block names among keys and
// checks the signature over msg with it.
func checkSignature(sig Signature, msg []byte, keys []ed25519.PublicKey) (ed25519.PublicKey, error) {
	if sig.Algorithm != Algorithm {
		return nil, fmt.Errorf("signature algorithm %q is not %s", sig.Algorithm, Algorithm)
	}
	var key ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == sig.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("%w (key id %q)", ErrUnknownKey, sig.KeyID)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig.Value)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: the value is not a base64 Ed25519 signature", ErrBadSignature)
	}
	if !ed25519.Verify(key, msg, raw) {
		return nil, ErrBadSignature
	}
	return key, nil
}

// Facts are what a certificate states, as the ledger holds them when it is
// issued.
type Facts struct {
	Erasure lethe.Erasure
	Subject []lethe.SubjectDigest
	// RequestLast is the request's last audit event, ChainHead the last
	// event of the whole audit, read together with the rest.
	RequestLast Link
	ChainHead   Link
}

// Build turns facts into an unsigned certificate issued at issuedAt. The
// request must be finished: an unfinished one is a KindConflict
// "not_finished" error.
func Build(f Facts, issuedAt time.Time) (*Certificate, error) {
	e := f.Erasure
	if !e.Status.Final() || e.CompletedAt == nil {
		return nil, lethe.Errorf(lethe.KindConflict, "not_finished",
			"the request has not finished (status %s); a certificate is issued once it has", e.Status)
	}
	c := &Certificate{
		Format:      Format,
		RequestID:   e.ID,
		Status:      string(e.Status),
		DryRun:      e.DryRun,
		Reason:      e.Reason,
		CreatedBy:   &e.CreatedBy,
		Subject:     make([]Digest, len(f.Subject)),
		CreatedAt:   e.CreatedAt.UTC(),
		Deadline:    e.Deadline.UTC(),
		CompletedAt: e.CompletedAt.UTC(),
		Systems:     make([]System, len(e.Systems)),
		Audit:       Audit{RequestLast: f.RequestLast, ChainHead: f.ChainHead},
		IssuedAt:    issuedAt.UTC().Truncate(time.Microsecond),
	}
	for i, d := range f.Subject {
		c.Subject[i] = Digest{Type: d.Type, Digest: d.Digest}
	}
	for i, p := range e.Systems {
		s := System{Name: p.Name, Outcome: string(p.Status), Records: p.Records, Attempts: p.Attempts, Detail: p.Detail}
		if p.ConfirmedAt != nil {
			t := p.ConfirmedAt.UTC()
			s.ConfirmedAt = &t
		}
		c.Systems[i] = s
	}
	return c, nil
}
