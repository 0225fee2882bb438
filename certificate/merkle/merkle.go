// Package merkle builds Merkle trees the way RFC 6962 (Certificate
// Transparency) defines them, and proves and checks that a leaf is in one.
// A batch certificate signs one root over all its subjects; an inclusion
// proof then shows one subject's leaf is under that root while revealing of
// the other subjects only a few hashes.
//
// Hashing is SHA-256 with domain separation, so that a leaf can never be
// passed off as an inner node or the reverse:
//
//	leaf hash = SHA-256(0x00 || leaf bytes)
//	node hash = SHA-256(0x01 || left child hash || right child hash)
//
// A tree of n > 1 leaves splits at k, the largest power of two below n: its
// left subtree holds leaves [0, k), its right subtree [k, n). The root of the
// empty tree is SHA-256 of nothing. The package depends on the standard
// library only.
package merkle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// HashSize is the length of every hash in a tree.
const HashSize = sha256.Size

// Hash is a leaf hash, a node hash or a root.
type Hash [HashSize]byte

// String is the hash in lower-case hex, the form documents carry.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hash written as 64 hex digits (either case).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("a hash is %d hex digits, got %d characters", 2*HashSize, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("a hash is hex digits")
	}
	return h, nil
}

// HashLeaf is the hash of one leaf's bytes.
func HashLeaf(data []byte) Hash {
	d := sha256.New()
	d.Write([]byte{0x00})
	d.Write(data)
	var h Hash
	d.Sum(h[:0])
	return h
}

// HashChildren is the hash of an inner node from its two children.
func HashChildren(left, right Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 0x01
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return sha256.Sum256(buf[:])
}

// EmptyRoot is the root of the tree without leaves.
func EmptyRoot() Hash { return sha256.Sum256(nil) }

// Builder computes the root of a tree from its leaf hashes given one at a
// time, keeping only one hash per level (at most 64): the root of a batch
// of any size needs no more memory than the root of a small one.
type Builder struct {
	// stack holds the roots of the complete subtrees so far, largest first;
	// their sizes are the bits of size, high to low.
	stack []Hash
	size  uint64
}

// Add appends the next leaf hash.
func (b *Builder) Add(leaf Hash) {
	h := leaf
	// Each trailing one bit of size is a complete subtree of that size,
	// which the new one completes into one twice as large.
	for n := b.size; n&1 == 1; n >>= 1 {
		h = HashChildren(b.stack[len(b.stack)-1], h)
		b.stack = b.stack[:len(b.stack)-1]
	}
	b.stack = append(b.stack, h)
	b.size++
}

// Size is the number of leaves added.
func (b *Builder) Size() uint64 { return b.size }

// Root is the root of the tree of the leaves added so far. The complete
// subtrees fold right to left, which is RFC 6962's split at the largest
// power of two.
func (b *Builder) Root() Hash {
	if len(b.stack) == 0 {
		return EmptyRoot()
	}
	h := b.stack[len(b.stack)-1]
	for i := len(b.stack) - 2; i >= 0; i-- {
		h = HashChildren(b.stack[i], h)
	}
	return h
}

// Tree holds every level of a tree, to answer inclusion proofs of any of
// its leaves without hashing again. It takes about twice the memory of its
// leaf hashes: 6.4 MB for 100,000 leaves.
type Tree struct {
	// levels[0] is the leaf hashes; each next level pairs the one below,
	// and a last node without a partner moves up unchanged, which yields
	// RFC 6962's tree. The last level holds the root alone.
	levels [][]Hash
}

// NewTree builds the tree of the given leaf hashes, which it keeps.
func NewTree(leaves []Hash) *Tree {
	t := &Tree{levels: [][]Hash{leaves}}
	for level := leaves; len(level) > 1; {
		next := make([]Hash, (len(level)+1)/2)
		for i := 0; i+1 < len(level); i += 2 {
			next[i/2] = HashChildren(level[i], level[i+1])
		}
		if len(level)%2 == 1 {
			next[len(next)-1] = level[len(level)-1]
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.levels[0])) }

// Root is the tree's root.
func (t *Tree) Root() Hash {
	top := t.levels[len(t.levels)-1]
	if len(top) == 0 {
		return EmptyRoot()
	}
	return top[0]
}

// Proof is an inclusion proof: that the leaf at Index is in the tree of
// Size leaves whose root the verifier already trusts.
type Proof struct {
	Index uint64
	Size  uint64
	// Path is RFC 6962's audit path: the sibling hashes from the leaf's
	// level up to the root's children.
	Path []Hash
}

// Proof proves the leaf at index.
func (t *Tree) Proof(index uint64) (Proof, error) {
	if index >= t.Size() {
		return Proof{}, fmt.Errorf("leaf index %d is outside a tree of %d leaves", index, t.Size())
	}
	p := Proof{Index: index, Size: t.Size()}
	i := index
	for _, level := range t.levels[:len(t.levels)-1] {
		if sib := i ^ 1; sib < uint64(len(level)) {
			p.Path = append(p.Path, level[sib])
		}
		i >>= 1
	}
	return p, nil
}

// ErrNotIncluded says that an inclusion proof does not lead from its leaf
// to the root: the leaf, its index, the tree size or the path differs from
// those the root was computed over.
var ErrNotIncluded = errors.New("the leaf is not in the tree: its proof does not lead to the root")

// RootFromProof is the root that leaf and p lead to (RFC 9162 section
// 2.1.3.2). It fails when the path has the wrong length for p.Index and
// p.Size; any other mismatch shows only as a root that differs.
func RootFromProof(leaf Hash, p Proof) (Hash, error) {
	if p.Index >= p.Size {
		return Hash{}, fmt.Errorf("%w (leaf index %d is outside a tree of %d leaves)", ErrNotIncluded, p.Index, p.Size)
	}
	if want := pathLen(p.Index, p.Size); len(p.Path) != want {
		return Hash{}, fmt.Errorf("%w (a leaf at index %d of %d has %d siblings on its path, the proof gives %d)",
			ErrNotIncluded, p.Index, p.Size, want, len(p.Path))
	}
	fn, sn := p.Index, p.Size-1
	r := leaf
	for _, sib := range p.Path {
		if fn&1 == 1 || fn == sn {
			r = HashChildren(sib, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = HashChildren(r, sib)
		}
		fn >>= 1
		sn >>= 1
	}
	return r, nil
}

// pathLen is the length of the audit path of leaf index in a tree of size
// leaves: one sibling per level where the leaf's ancestor has one.
func pathLen(index, size uint64) int {
	n := 0
	for last := size - 1; last > 0; index, last = index>>1, last>>1 {
		if index^1 <= last {
			n++
		}
	}
	return n
}

// VerifyInclusion checks that leaf is at p.Index in the tree of p.Size
// leaves whose root is root, and returns ErrNotIncluded (wrapped) when not.
func VerifyInclusion(leaf Hash, p Proof, root Hash) error {
	got, err := RootFromProof(leaf, p)
	if err != nil {
		return err
	}
	if got != root {
		return ErrNotIncluded
	}
	return nil
}
