package merkle_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/lethe-dev/lethe/certificate/merkle"
)

// The reference below follows RFC 6962 section 2.1 word for word, with
// sha256 and byte slices only, so that it shares no code with the package.

func refMTH(d [][]byte) []byte {
	switch len(d) {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		s := sha256.Sum256(append([]byte{0x00}, d[0]...))
		return s[:]
	}
	k := largestPowerOfTwoBelow(len(d))
	buf := append([]byte{0x01}, refMTH(d[:k])...)
	buf = append(buf, refMTH(d[k:])...)
	s := sha256.Sum256(buf)
	return s[:]
}

func refPath(m int, d [][]byte) [][]byte {
	if len(d) == 1 {
		return nil
	}
	k := largestPowerOfTwoBelow(len(d))
	if m < k {
		return append(refPath(m, d[:k]), refMTH(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refMTH(d[:k]))
}

func largestPowerOfTwoBelow(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// ctLeaves are the eight leaves of the Certificate Transparency tests'
// reference tree.
var ctLeaves = [][]byte{
	{},
	{0x00},
	{0x10},
	{0x20, 0x21},
	{0x30, 0x31},
	{0x40, 0x41, 0x42, 0x43},
	{0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57},
	{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f},
}

// ctRoots are the roots of the trees of the first 1..8 of ctLeaves, as
// the Certificate Transparency test suites publish them.
var ctRoots = []string{
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

func hashes(d [][]byte) []merkle.Hash {
	out := make([]merkle.Hash, len(d))
	for i, b := range d {
		out[i] = merkle.HashLeaf(b)
	}
	return out
}

func TestKnownRoots(t *testing.T) {
	if got, want := merkle.EmptyRoot().String(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("empty root = %s, want %s", got, want)
	}
	if got := merkle.NewTree(nil).Root(); got != merkle.EmptyRoot() {
		t.Errorf("NewTree(nil).Root() = %s, want the empty root", got)
	}
	for n := 1; n <= len(ctLeaves); n++ {
		var b merkle.Builder
		for _, h := range hashes(ctLeaves[:n]) {
			b.Add(h)
		}
		tree := merkle.NewTree(hashes(ctLeaves[:n]))
		ref := merkle.Hash(refMTH(ctLeaves[:n]))
		if ref.String() != ctRoots[n-1] {
			t.Errorf("size %d: the reference gives %s, the published root is %s", n, ref, ctRoots[n-1])
		}
		if tree.Root() != ref || b.Root() != ref || b.Size() != uint64(n) || tree.Size() != uint64(n) {
			t.Errorf("size %d: Tree root %s, Builder root %s (size %d), want %s", n, tree.Root(), b.Root(), b.Size(), ref)
		}
	}
}

// TestKnownPaths checks the audit paths of the eight-leaf tree against the
// reference, including three the Certificate Transparency tests publish.
func TestKnownPaths(t *testing.T) {
	published := map[[2]int][]string{
		{0, 8}: {
			"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
		},
		{5, 8}: {
			"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
			"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
			"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		},
		{2, 3}: {
			"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		},
	}
	for n := 1; n <= len(ctLeaves); n++ {
		tree := merkle.NewTree(hashes(ctLeaves[:n]))
		for m := 0; m < n; m++ {
			p, err := tree.Proof(uint64(m))
			if err != nil {
				t.Fatalf("Proof(%d) of %d: %v", m, n, err)
			}
			ref := refPath(m, ctLeaves[:n])
			if len(p.Path) != len(ref) {
				t.Errorf("leaf %d of %d: path of %d hashes, the reference has %d", m, n, len(p.Path), len(ref))
				continue
			}
			for i := range ref {
				if p.Path[i] != merkle.Hash(ref[i]) {
					t.Errorf("leaf %d of %d: path[%d] = %s, the reference has %x", m, n, i, p.Path[i], ref[i])
				}
			}
			if want, ok := published[[2]int{m, n}]; ok {
				for i := range want {
					if i >= len(p.Path) || p.Path[i].String() != want[i] {
						t.Errorf("leaf %d of %d: path differs from the published one at %d", m, n, i)
					}
				}
			}
		}
	}
}

// leafData gives n distinct leaves.
func leafData(n int) [][]byte {
	d := make([][]byte, n)
	for i := range d {
		d[i] = binary.BigEndian.AppendUint64(nil, uint64(i)*0x9e3779b97f4a7c15)
	}
	return d
}

// TestEveryLeafVerifies checks, for every tree of 1 to 70 leaves, that each
// leaf's proof verifies and matches the reference, and that a proof fails
// once anything in it changes: the leaf, the index, the size, any sibling,
// a sibling more or less, or the root.
func TestEveryLeafVerifies(t *testing.T) {
	for n := 1; n <= 70; n++ {
		d := leafData(n)
		leaves := hashes(d)
		tree := merkle.NewTree(leaves)
		root := tree.Root()
		if root != merkle.Hash(refMTH(d)) {
			t.Fatalf("size %d: root differs from the reference", n)
		}
		var b merkle.Builder
		for _, h := range leaves {
			b.Add(h)
		}
		if b.Root() != root {
			t.Fatalf("size %d: Builder and Tree disagree", n)
		}
		for m := 0; m < n; m++ {
			p, err := tree.Proof(uint64(m))
			if err != nil {
				t.Fatal(err)
			}
			if err := merkle.VerifyInclusion(leaves[m], p, root); err != nil {
				t.Fatalf("leaf %d of %d: %v", m, n, err)
			}
			fails := func(what string, leaf merkle.Hash, q merkle.Proof, r merkle.Hash) {
				t.Helper()
				if err := merkle.VerifyInclusion(leaf, q, r); !errors.Is(err, merkle.ErrNotIncluded) {
					t.Errorf("leaf %d of %d, %s: VerifyInclusion = %v, want ErrNotIncluded", m, n, what, err)
				}
			}
			if n > 1 {
				fails("another leaf", leaves[(m+1)%n], p, root)
			}
			fails("another leaf's data", merkle.HashLeaf([]byte("other")), p, root)
			fails("a different root", leaves[m], p, merkle.HashLeaf(nil))
			for _, idx := range []uint64{uint64(m) + 1, uint64(m) ^ 1, uint64(n), uint64(n) + 5} {
				if idx == uint64(m) {
					continue
				}
				q := p
				q.Index = idx
				fails("index changed", leaves[m], q, root)
			}
			// A size whose tree gives this leaf a path of another shape
			// fails. A size with the same shape cannot be told from the path
			// alone, which is why a verifier takes the size from the signed
			// certificate rather than from the proof.
			for _, size := range []int{n + 1, n - 1, 2 * n, m + 1} {
				if size <= m || size == n {
					continue
				}
				q := p
				q.Size = uint64(size)
				if len(refPath(m, leafData(size))) != len(p.Path) {
					fails("size changed", leaves[m], q, root)
				}
			}
			for i := range p.Path {
				q := p
				q.Path = append([]merkle.Hash(nil), p.Path...)
				q.Path[i][i%merkle.HashSize] ^= 0x80
				fails("sibling changed", leaves[m], q, root)
			}
			q := p
			q.Path = append(append([]merkle.Hash(nil), p.Path...), root)
			fails("a sibling added", leaves[m], q, root)
			if len(p.Path) > 0 {
				q := p
				q.Path = p.Path[:len(p.Path)-1]
				fails("a sibling dropped", leaves[m], q, root)
			}
			// The leaf's hash, not its bytes, is what goes in: the inner node
			// with the same children as a leaf's bytes is a different hash.
			if len(p.Path) > 0 {
				fails("a node hash as leaf", merkle.HashChildren(leaves[m], p.Path[0]), p, root)
			}
		}
		if _, err := tree.Proof(uint64(n)); err == nil {
			t.Errorf("size %d: Proof of index %d accepted", n, n)
		}
	}
}

func TestParseHash(t *testing.T) {
	h := merkle.HashLeaf([]byte("x"))
	for _, s := range []string{h.String(), upper(h.String())} {
		got, err := merkle.ParseHash(s)
		if err != nil || got != h {
			t.Errorf("ParseHash(%q) = %s, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "ab", h.String() + "00", "zz" + h.String()[2:]} {
		if _, err := merkle.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestLargeTree checks a tree of a full batch (100,000 leaves): Builder and
// Tree agree and leaves across it verify with 17 siblings at most.
func TestLargeTree(t *testing.T) {
	const n = 100_000
	leaves := hashes(leafData(n))
	tree := merkle.NewTree(leaves)
	var b merkle.Builder
	for _, h := range leaves {
		b.Add(h)
	}
	if b.Root() != tree.Root() {
		t.Fatal("Builder and Tree disagree on 100,000 leaves")
	}
	for _, m := range []uint64{0, 1, 65535, 65536, 98303, 98304, n - 2, n - 1} {
		p, err := tree.Proof(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Path) > 17 {
			t.Errorf("leaf %d: %d siblings, want at most 17", m, len(p.Path))
		}
		if err := merkle.VerifyInclusion(leaves[m], p, tree.Root()); err != nil {
			t.Errorf("leaf %d: %v", m, err)
		}
	}
}

func BenchmarkBuilder100k(b *testing.B) {
	leaves := hashes(leafData(100_000))
	b.ReportAllocs()
	for b.Loop() {
		var bl merkle.Builder
		for _, h := range leaves {
			bl.Add(h)
		}
		_ = bl.Root()
	}
}

func BenchmarkTree100k(b *testing.B) {
	leaves := hashes(leafData(100_000))
	b.ReportAllocs()
	for b.Loop() {
		tree := merkle.NewTree(leaves)
		if _, err := tree.Proof(12345); err != nil {
			b.Fatal(err)
		}
	}
}
