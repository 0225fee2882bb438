package certificate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/lethe-dev/lethe/certificate/merkle"
)

// LeafFormat names the version of the leaf encoding below; a batch
// certificate states it, so that a verifier knows how to hash a leaf.
//
// A leaf's bytes are a sequence of netstrings, each "<byte length in
// decimal>:<UTF-8 bytes>,", of these fields in this order:
//
//	lethe.batch-leaf.v1
//	status                      the subject's final status in the batch
//	number of identifiers       then, for each, sorted by type then digest:
//	  type, digest              the keyed digest in lower-case hex
//	number of systems           then, for each, sorted by name:
//	  name, outcome, records
//
// Numbers are decimal without leading zeros. Sorting compares bytes. The
// leaf's hash in the tree is SHA-256(0x00 || bytes). No identifier value
// is part of a leaf, only its keyed digest.
const LeafFormat = "lethe.batch-leaf.v1"

// Leaf is what a batch certificate states about one subject, through the
// Merkle root: who (as keyed digests) and what each system did.
type Leaf struct {
	// Status is the subject's final status in the batch: completed, failed
	// or canceled.
	Status  string       `json:"status"`
	Subject []Digest     `json:"subject"`
	Systems []LeafSystem `json:"systems"`
}

// LeafSystem is one system's outcome for one subject of a batch.
type LeafSystem struct {
	Name string `json:"name"`
	// Outcome is the system's final status for the subject, as in System.
	Outcome string `json:"outcome"`
	Records int64  `json:"records"`
}

// Canonical returns the leaf with its identifiers and systems sorted, the
// order of its encoding and of the proofs Lethe writes. It checks what the
// encoding needs: a status, at least one identifier, no identifier or
// system twice, no empty name and no negative count, valid UTF-8.
func (l Leaf) Canonical() (Leaf, error) {
	c := l
	// Leaves usually come sorted (the ledger reads them so); only others
	// are copied, so that the caller's slices are never reordered.
	if !slices.IsSortedFunc(c.Subject, compareDigests) {
		c.Subject = slices.Clone(c.Subject)
		slices.SortFunc(c.Subject, compareDigests)
	}
	if !slices.IsSortedFunc(c.Systems, compareSystems) {
		c.Systems = slices.Clone(c.Systems)
		slices.SortFunc(c.Systems, compareSystems)
	}
	if c.Status == "" || !utf8.ValidString(c.Status) {
		return Leaf{}, errors.New("leaf: the subject's status is empty or not UTF-8")
	}
	if len(c.Subject) == 0 {
		return Leaf{}, errors.New("leaf: the subject has no identifier")
	}
	for i, d := range c.Subject {
		if d.Type == "" || d.Digest == "" || !utf8.ValidString(d.Type) || !utf8.ValidString(d.Digest) {
			return Leaf{}, fmt.Errorf("leaf: identifier %d has an empty or non-UTF-8 type or digest", i+1)
		}
		if i > 0 && d == c.Subject[i-1] {
			return Leaf{}, fmt.Errorf("leaf: identifier %s %s appears twice", d.Type, d.Digest)
		}
	}
	for i, s := range c.Systems {
		if s.Name == "" || s.Outcome == "" || !utf8.ValidString(s.Name) || !utf8.ValidString(s.Outcome) {
			return Leaf{}, fmt.Errorf("leaf: system %d has an empty or non-UTF-8 name or outcome", i+1)
		}
		if i > 0 && s.Name == c.Systems[i-1].Name {
			return Leaf{}, fmt.Errorf("leaf: system %q appears twice", s.Name)
		}
		if s.Records < 0 {
			return Leaf{}, fmt.Errorf("leaf: system %q has %d records", s.Name, s.Records)
		}
	}
	return c, nil
}

func compareDigests(a, b Digest) int {
	return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Digest, b.Digest))
}

func compareSystems(a, b LeafSystem) int { return cmp.Compare(a.Name, b.Name) }

// EncodeLeaf returns the leaf's bytes in the LeafFormat encoding.
func EncodeLeaf(l Leaf) ([]byte, error) {
	c, err := l.Canonical()
	if err != nil {
		return nil, err
	}
	return appendLeaf(nil, c), nil
}

// appendLeaf appends the encoding of a canonical leaf to b.
func appendLeaf(b []byte, c Leaf) []byte {
	ns := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
		b = append(b, ',')
	}
	num := func(n int64) {
		var d [20]byte
		digits := strconv.AppendInt(d[:0], n, 10)
		b = strconv.AppendInt(b, int64(len(digits)), 10)
		b = append(b, ':')
		b = append(b, digits...)
		b = append(b, ',')
	}
	ns(LeafFormat)
	ns(c.Status)
	num(int64(len(c.Subject)))
	for _, d := range c.Subject {
		ns(d.Type)
		ns(d.Digest)
	}
	num(int64(len(c.Systems)))
	for _, s := range c.Systems {
		ns(s.Name)
		ns(s.Outcome)
		num(s.Records)
	}
	return b
}

// LeafHash is the leaf's hash in the batch's Merkle tree.
func LeafHash(l Leaf) (merkle.Hash, error) {
	b, err := EncodeLeaf(l)
	if err != nil {
		return merkle.Hash{}, err
	}
	return merkle.HashLeaf(b), nil
}

// Tally reads a batch's leaves once, in tree order, and keeps what its
// certificate states about all of them: the Merkle root and size and the
// counts per outcome. Its memory does not grow with the number of leaves,
// so the issuer can stream a batch of any size from the ledger.
type Tally struct {
	tree     merkle.Builder
	subjects map[string]int64
	systems  map[string]map[string]int64
	buf      []byte
}

// Add appends the next leaf of the tree.
func (t *Tally) Add(l Leaf) error {
	c, err := l.Canonical()
	if err != nil {
		return fmt.Errorf("leaf %d: %w", t.tree.Size(), err)
	}
	t.buf = appendLeaf(t.buf[:0], c)
	t.tree.Add(merkle.HashLeaf(t.buf))
	if t.subjects == nil {
		t.subjects = map[string]int64{}
		t.systems = map[string]map[string]int64{}
	}
	t.subjects[c.Status]++
	for _, s := range c.Systems {
		m := t.systems[s.Name]
		if m == nil {
			m = map[string]int64{}
			t.systems[s.Name] = m
		}
		m[s.Outcome]++
	}
	return nil
}

// Size is the number of leaves added.
func (t *Tally) Size() uint64 { return t.tree.Size() }

// Root is the Merkle root of the leaves added.
func (t *Tally) Root() merkle.Hash { return t.tree.Root() }
