package certificate_test

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/certificate"
)

// FuzzVerifyBatch hands the offline verifier a batch certificate file and
// a proof file it does not control. Nothing panics and every error is one
// line. Only the signed file (with or without its final newline)
// verifies, and a proof verifies against it only when its leaf is, byte
// for byte in the leaf encoding, the leaf the tree holds at its index.
func FuzzVerifyBatch(f *testing.F) {
	signer := testSigner(f, 1)
	keys := []ed25519.PublicKey{signer.Public()}
	golden, err := os.ReadFile("testdata/batch.certificate.json")
	if err != nil {
		f.Fatal(err)
	}
	proof, err := os.ReadFile("testdata/batch.proof-7.json")
	if err != nil {
		f.Fatal(err)
	}
	c, _, err := certificate.VerifyBatch(golden, keys)
	if err != nil {
		f.Fatal(err)
	}
	leaves := make([][]byte, c.Tree.Size)
	for i := range leaves {
		if leaves[i], err = certificate.EncodeLeaf(batchLeaf(i)); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(golden, proof)
	f.Add(golden, bytes.Replace(proof, []byte(`"leaf_index": 7`), []byte(`"leaf_index": 6`), 1))
	f.Add(golden, batchProof(f, testBatchID, int(c.Tree.Size), 24))
	f.Add(bytes.Replace(golden, []byte(`"total": 25`), []byte(`"total": 26`), 1), proof)
	f.Add([]byte(`{"format":"lethe.batch-certificate.v1"}`), []byte(`{"format":"lethe.batch-inclusion-proof.v1","leaf_index":99,"tree_size":25}`))
	f.Fuzz(func(t *testing.T, certFile, proofFile []byte) {
		oneLine := func(what string, err error) {
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("%s error spans lines: %q", what, err)
			}
		}
		got, _, err := certificate.VerifyBatch(certFile, keys)
		oneLine("certificate", err)
		if err == nil && !bytes.Equal(bytes.TrimSuffix(golden, []byte("\n")), bytes.TrimSuffix(certFile, []byte("\n"))) {
			t.Fatalf("a file other than the signed one verifies:\n%s", certFile)
		}
		if err == nil && got.Tree.Root != c.Tree.Root {
			t.Fatalf("the signed file verifies with root %s, want %s", got.Tree.Root, c.Tree.Root)
		}
		p, err := certificate.ParseProof(proofFile)
		oneLine("proof", err)
		if err != nil {
			return
		}
		err = certificate.VerifyProof(c, p)
		oneLine("proof", err)
		if err != nil {
			return
		}
		enc, encErr := certificate.EncodeLeaf(p.Leaf)
		if encErr != nil || p.LeafIndex >= c.Tree.Size || !bytes.Equal(enc, leaves[p.LeafIndex]) {
			t.Fatalf("a proof verifies whose leaf is not the tree's leaf %d: %+v", p.LeafIndex, p.Leaf)
		}
	})
}
