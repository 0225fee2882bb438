package lethe

import "time"

// Suppression is one entry of the suppression list: the keyed digest of an
// identifier whose subject an erasure request erased, and when that request
// finished. A service that restores a backup may bring such a subject's data
// back; it digests its own identifiers with the same key, finds them here
// and erases them again, without Lethe ever handing out a value.
type Suppression struct {
	// RequestID is the erasure request, or the bulk erasure (batch), that
	// erased the subject, so that the erasure done again after a restore
	// can name the request it restores.
	RequestID string `json:"request_id"`
	// Type and Digest are one identifier of the subject, as package digest
	// computes it: hex HMAC-SHA256 under LETHE_SUBJECT_KEY.
	Type   string `json:"type"`
	Digest string `json:"digest"`
	// ErasedAt is when the request finished (its completed_at): data in a
	// backup taken before then may still hold the subject.
	ErasedAt time.Time `json:"erased_at"`
}
