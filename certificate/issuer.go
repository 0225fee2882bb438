package certificate

import (
	"context"
	"time"

	"github.com/lethe-dev/lethe"
)

// Store is what issuing needs from the ledger; *registry.Store implements it.
type Store interface {
	// StoredCertificate returns the certificate stored for a request, with
	// found false when none is.
	StoredCertificate(ctx context.Context, requestID string) (doc []byte, found bool, err error)
	// CertificateFacts reads what a certificate of the request states, in
	// one consistent snapshot.
	CertificateFacts(ctx context.Context, requestID string) (Facts, error)
	// SaveCertificate stores doc unless a certificate of the request is
	// stored already, and returns the stored one: the first issue wins.
	SaveCertificate(ctx context.Context, requestID, keyID string, issuedAt time.Time, doc []byte) (stored []byte, err error)
}

// Issuer answers a request's certificate: the stored one when there is one,
// else a new one, signed and stored first, so that every later answer (and
// every replica's) is the same file.
type Issuer struct {
	Store Store
	// Signer signs new certificates; nil means none can be issued and only
	// stored ones are served.
	Signer *Signer
	// Now is the clock for issued_at; nil means time.Now.
	Now func() time.Time
}

// Certificate returns the canonical file of the request's certificate,
// issuing it on first call. Errors: the store's erasure_not_found for an
// unknown request, KindConflict "not_finished" for one still in progress,
// KindUnavailable "signing_key_missing" when a new certificate would be
// needed and no key is configured.
func (i *Issuer) Certificate(ctx context.Context, requestID string) ([]byte, error) {
	doc, found, err := i.Store.StoredCertificate(ctx, requestID)
	if err != nil {
		return nil, err
	}
	if found {
		return doc, nil
	}
	facts, err := i.Store.CertificateFacts(ctx, requestID)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	c, err := Build(facts, now())
	if err != nil {
		return nil, err
	}
	if i.Signer == nil {
		return nil, lethe.Errorf(lethe.KindUnavailable, "signing_key_missing",
			"no certificate was issued for this request yet and LETHE_SIGNING_KEY is not configured")
	}
	doc, err = i.Signer.Sign(c)
	if err != nil {
		return nil, err
	}
	return i.Store.SaveCertificate(ctx, requestID, i.Signer.KeyID(), c.IssuedAt, doc)
}
