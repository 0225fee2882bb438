package certificate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/lethe-dev/lethe/certificate/merkle"
)

// ProofFormat names the version of an inclusion proof file.
const ProofFormat = "lethe.batch-inclusion-proof.v1"

// Proof shows that one subject's leaf is in a batch certificate's Merkle
// tree. It carries that subject's leaf and the hashes of the tree needed to
// reach the root, nothing about the other subjects but those hashes. It is
// not signed: it is checked against a batch certificate, which is.
type Proof struct {
	Format  string `json:"format"`
	BatchID string `json:"batch_id"`
	// Leaf is the subject's leaf, in canonical order.
	Leaf      Leaf   `json:"leaf"`
	LeafIndex uint64 `json:"leaf_index"`
	TreeSize  uint64 `json:"tree_size"`
	// AuditPath is RFC 6962's audit path: the sibling hashes from the leaf
	// up to the root, in lower-case hex.
	AuditPath []string `json:"audit_path"`
}

// NewProof builds the proof file of one subject of a batch from its leaf
// and the tree's proof of its index (merkle.NewTree over the batch's leaf
// hashes in tree order, then Tree.Proof).
func NewProof(batchID string, leaf Leaf, p merkle.Proof) (*Proof, error) {
	c, err := leaf.Canonical()
	if err != nil {
		return nil, err
	}
	out := &Proof{
		Format: ProofFormat, BatchID: batchID, Leaf: c,
		LeafIndex: p.Index, TreeSize: p.Size, AuditPath: make([]string, len(p.Path)),
	}
	for i, h := range p.Path {
		out.AuditPath[i] = h.String()
	}
	return out, nil
}

// EncodeProof returns a proof file: indented JSON with one final newline.
func EncodeProof(p *Proof) ([]byte, error) {
	b, err := encodeJSON(p)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseProof reads a proof file: one JSON document of ProofFormat with no
// unknown fields, at most MaxSize bytes.
func ParseProof(file []byte) (*Proof, error) {
	if len(file) > MaxSize {
		return nil, fmt.Errorf("proof is larger than %d bytes", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(file))
	dec.DisallowUnknownFields()
	var p Proof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("proof is not a valid document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("proof has data after its document")
	}
	if p.Format != ProofFormat {
		return nil, fmt.Errorf("proof format %q is not %q", p.Format, ProofFormat)
	}
	return &p, nil
}

// Proof verification errors, for callers that tell them apart with
// errors.Is.
var (
	ErrOtherBatch  = errors.New("the proof is for another batch")
	ErrNotInBatch  = errors.New("the subject's leaf is not in the batch: the proof does not lead to the certificate's root")
	ErrOtherTree   = errors.New("the proof is for a tree of another size than the certificate's")
	ErrInvalidLeaf = errors.New("the proof's leaf cannot be encoded")
)

// VerifyProof checks that the proof's leaf is in the tree a verified batch
// certificate signs (VerifyBatch first): same batch, same tree size, and
// the leaf's hash leads up the audit path to the certificate's root.
func VerifyProof(c *BatchCertificate, p *Proof) error {
	if p.BatchID != c.BatchID {
		return fmt.Errorf("%w (proof: %q, certificate: %q)", ErrOtherBatch, p.BatchID, c.BatchID)
	}
	// The size comes from the signed certificate: an audit path alone
	// cannot always tell two sizes apart.
	if p.TreeSize != c.Tree.Size {
		return fmt.Errorf("%w (proof: %d leaves, certificate: %d)", ErrOtherTree, p.TreeSize, c.Tree.Size)
	}
	leaf, err := LeafHash(p.Leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLeaf, err)
	}
	mp := merkle.Proof{Index: p.LeafIndex, Size: p.TreeSize, Path: make([]merkle.Hash, len(p.AuditPath))}
	for i, s := range p.AuditPath {
		if mp.Path[i], err = merkle.ParseHash(s); err != nil {
			return fmt.Errorf("%w: audit path entry %d: %w", ErrNotInBatch, i+1, err)
		}
	}
	root, err := merkle.ParseHash(c.Tree.Root)
	if err != nil {
		return fmt.Errorf("certificate tree root: %w", err)
	}
	switch err := merkle.VerifyInclusion(leaf, mp, root); {
	case err == merkle.ErrNotIncluded:
		return ErrNotInBatch
	case err != nil:
		return fmt.Errorf("%w (%w)", ErrNotInBatch, err)
	}
	return nil
}
