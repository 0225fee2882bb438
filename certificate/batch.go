package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate/merkle"
)

// BatchFormat names the version of a batch's certificate. It signs one
// Merkle root over the batch's subjects instead of listing them, so that
// the certificate of 100,000 subjects stays small and one subject can be
// shown its part (an inclusion proof) without the others.
const BatchFormat = "lethe.batch-certificate.v1"

// BatchCertificate is the document of a finished batch. Like Certificate,
// its JSON form is fixed by the field order and tags below (maps encode
// with their keys sorted) and only that form verifies.
type BatchCertificate struct {
	Format  string `json:"format"`
	BatchID string `json:"batch_id"`
	// Status is the batch's final status: completed, failed or canceled.
	Status string `json:"status"`
	// DryRun marks a batch that erased nothing.
	DryRun      bool      `json:"dry_run"`
	Reason      string    `json:"reason"`
	RequestedBy string    `json:"requested_by"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	FinishedAt  time.Time `json:"finished_at"`
	// Subjects counts the subjects by their final status.
	Subjects BatchSubjects `json:"subjects"`
	// Systems counts, per system, the subjects by that system's outcome.
	Systems   []BatchSystem `json:"systems"`
	Tree      BatchTree     `json:"tree"`
	Audit     BatchAudit    `json:"audit"`
	IssuedAt  time.Time     `json:"issued_at"`
	Signature Signature     `json:"signature"`
}

// BatchSubjects is how many subjects a batch had, and how each ended.
type BatchSubjects struct {
	Total int64 `json:"total"`
	// ByStatus maps a subject status to the number of subjects in it; the
	// numbers add up to Total.
	ByStatus map[string]int64 `json:"by_status"`
}

// BatchSystem is what one system did across a batch.
type BatchSystem struct {
	Name string `json:"name"`
	// ByOutcome maps an outcome to the number of subjects the system ended
	// with it.
	ByOutcome map[string]int64 `json:"by_outcome"`
}

// BatchTree is the Merkle tree over the batch's subjects: one leaf per
// subject, encoded as LeafFormat says, hashed as package merkle says.
type BatchTree struct {
	LeafFormat string `json:"leaf_format"`
	Size       uint64 `json:"size"`
	// Root is the tree's root in lower-case hex.
	Root string `json:"root"`
}

// BatchAudit anchors a batch certificate in the hash-chained audit, like
// Audit does a request's.
type BatchAudit struct {
	BatchLast Link `json:"batch_last"`
	ChainHead Link `json:"chain_head"`
}

// BatchFacts are what a batch certificate states, as the ledger holds them
// when it is issued.
type BatchFacts struct {
	ID          string
	Status      lethe.RequestStatus
	DryRun      bool
	Reason      string
	RequestedBy string
	CreatedBy   string
	CreatedAt   time.Time
	// FinishedAt is nil while the batch runs.
	FinishedAt *time.Time
	// Leaves holds every subject's leaf, added in tree order.
	Leaves *Tally
	// BatchLast is the batch's last audit event, ChainHead the last event
	// of the whole audit, read together with the rest.
	BatchLast Link
	ChainHead Link
}

// BuildBatch turns facts into an unsigned batch certificate issued at
// issuedAt. The batch must be finished (else a KindConflict "not_finished"
// error) and have at least one subject.
func BuildBatch(f BatchFacts, issuedAt time.Time) (*BatchCertificate, error) {
	if !f.Status.Final() || f.FinishedAt == nil {
		return nil, lethe.Errorf(lethe.KindConflict, "not_finished",
			"the batch has not finished (status %s); a certificate is issued once it has", f.Status)
	}
	if f.Leaves == nil || f.Leaves.Size() == 0 {
		return nil, errors.New("batch certificate: the batch has no subject")
	}
	c := &BatchCertificate{
		Format:      BatchFormat,
		BatchID:     f.ID,
		Status:      string(f.Status),
		DryRun:      f.DryRun,
		Reason:      f.Reason,
		RequestedBy: f.RequestedBy,
		CreatedBy:   f.CreatedBy,
		CreatedAt:   f.CreatedAt.UTC(),
		FinishedAt:  f.FinishedAt.UTC(),
		Subjects:    BatchSubjects{Total: int64(f.Leaves.Size()), ByStatus: maps.Clone(f.Leaves.subjects)},
		Systems:     make([]BatchSystem, 0, len(f.Leaves.systems)),
		Tree:        BatchTree{LeafFormat: LeafFormat, Size: f.Leaves.Size(), Root: f.Leaves.Root().String()},
		Audit:       BatchAudit{BatchLast: f.BatchLast, ChainHead: f.ChainHead},
		IssuedAt:    issuedAt.UTC().Truncate(time.Microsecond),
	}
	for _, name := range slices.Sorted(maps.Keys(f.Leaves.systems)) {
		c.Systems = append(c.Systems, BatchSystem{Name: name, ByOutcome: maps.Clone(f.Leaves.systems[name])})
	}
	return c, nil
}

// EncodeBatch returns the canonical form of c: indented JSON in field
// order, ending with one newline.
func EncodeBatch(c *BatchCertificate) ([]byte, error) {
	b, err := encodeJSON(c)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// SignBatch fills in c's signature block and returns c's canonical form.
func (s *Signer) SignBatch(c *BatchCertificate) ([]byte, error) {
	c.Signature = Signature{Algorithm: Algorithm, KeyID: s.kid}
	msg, err := batchSignedBytes(c)
	if err != nil {
		return nil, err
	}
	c.Signature.Value = s.sign(msg)
	return EncodeBatch(c)
}

// batchSignedBytes is what a batch certificate's signature covers, as for
// a request's: the canonical form with the signature's value empty and no
// final newline.
func batchSignedBytes(c *BatchCertificate) ([]byte, error) {
	u := *c
	u.Signature.Value = ""
	return encodeJSON(&u)
}

// ErrBatchCertificate says that a file handed to Verify is a batch
// certificate, which VerifyBatch checks.
var ErrBatchCertificate = errors.New("the file is a batch certificate (" + BatchFormat + ")")

// FormatOf reads a certificate file's format field without checking
// anything else, so that a caller can choose between Verify and
// VerifyBatch. It returns "" when the file has none.
func FormatOf(file []byte) string {
	var f struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(file, &f) != nil {
		return ""
	}
	return f.Format
}

// VerifyBatch checks a batch certificate file against the public keys the
// caller trusts, as Verify checks a request's, and that what it states is
// consistent: the tree's size is the number of subjects, the counts add
// up, the root is a hash.
func VerifyBatch(file []byte, keys []ed25519.PublicKey) (*BatchCertificate, ed25519.PublicKey, error) {
	body, err := canonicalBody(file)
	if err != nil {
		return nil, nil, err
	}
	var c BatchCertificate
	if err := decodeStrict(body, &c); err != nil {
		return nil, nil, err
	}
	canonical, err := encodeJSON(&c)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(canonical, body) {
		return nil, nil, ErrNotCanonical
	}
	if c.Format != BatchFormat {
		return nil, nil, fmt.Errorf("certificate format %q is not %q", c.Format, BatchFormat)
	}
	msg, err := batchSignedBytes(&c)
	if err != nil {
		return nil, nil, err
	}
	key, err := checkSignature(c.Signature, msg, keys)
	if err != nil {
		return nil, nil, err
	}
	if err := c.consistent(); err != nil {
		return nil, nil, fmt.Errorf("the signed batch certificate is inconsistent: %w", err)
	}
	return &c, key, nil
}

// consistent checks what the signature cannot: that the issuer stated
// numbers that agree with each other.
func (c *BatchCertificate) consistent() error {
	if c.Tree.LeafFormat != LeafFormat {
		return fmt.Errorf("leaf format %q is not %q", c.Tree.LeafFormat, LeafFormat)
	}
	if _, err := merkle.ParseHash(c.Tree.Root); err != nil {
		return fmt.Errorf("tree root: %w", err)
	}
	if c.Subjects.Total <= 0 || uint64(c.Subjects.Total) != c.Tree.Size {
		return fmt.Errorf("%d subjects but a tree of %d leaves", c.Subjects.Total, c.Tree.Size)
	}
	if sum := total(c.Subjects.ByStatus); sum != c.Subjects.Total {
		return fmt.Errorf("subjects by status add up to %d, not %d", sum, c.Subjects.Total)
	}
	for _, s := range c.Systems {
		if sum := total(s.ByOutcome); sum > c.Subjects.Total {
			return fmt.Errorf("system %q counts %d subjects of %d", s.Name, sum, c.Subjects.Total)
		}
	}
	return nil
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		if v < 0 {
			return -1
		}
		n += v
	}
	return n
}

// canonicalBody bounds a certificate file and drops its optional final
// newline.
func canonicalBody(file []byte) ([]byte, error) {
	if len(file) > MaxSize {
		return nil, fmt.Errorf("certificate is larger than %d bytes", MaxSize)
	}
	return bytes.TrimSuffix(file, []byte("\n")), nil
}

// decodeStrict reads exactly one JSON document with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("certificate is not a valid document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("certificate has data after its document")
	}
	return nil
}
