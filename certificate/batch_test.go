package certificate_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/certificate/merkle"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/batch.* from the current code")

// TestLeafEncoding pins the leaf encoding byte for byte, as a third party
// reading the documentation would write it: netstrings, identifiers sorted
// by type then digest, systems by name, lengths in bytes.
func TestLeafEncoding(t *testing.T) {
	leaf := certificate.Leaf{
		Status: "completed",
		Subject: []certificate.Digest{
			{Type: "user_id", Digest: "cd"},
			{Type: "email", Digest: "ef"},
			{Type: "email", Digest: "ab"},
		},
		Systems: []certificate.LeafSystem{
			{Name: "orders", Outcome: "failed", Records: 0},
			{Name: "café", Outcome: "erased", Records: 12},
			{Name: "billing", Outcome: "retained", Records: 1},
		},
	}
	want := "19:lethe.batch-leaf.v1,9:completed," +
		"1:3,5:email,2:ab,5:email,2:ef,7:user_id,2:cd," +
		"1:3,7:billing,8:retained,1:1,5:café,6:erased,2:12,6:orders,6:failed,1:0,"
	got, err := certificate.EncodeLeaf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("EncodeLeaf =\n%s\nwant\n%s", got, want)
	}
	h, err := certificate.LeafHash(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(append([]byte{0}, want...)); h != merkle.Hash(sum) {
		t.Errorf("LeafHash = %s, want SHA-256(0x00 || encoding) = %x", h, sum)
	}
	// The caller's order does not matter, and the caller's slices are not
	// reordered.
	reordered := leaf
	reordered.Subject = []certificate.Digest{leaf.Subject[2], leaf.Subject[0], leaf.Subject[1]}
	if again, _ := certificate.EncodeLeaf(reordered); !bytes.Equal(again, got) {
		t.Error("the same leaf in another order encodes differently")
	}
	if leaf.Subject[0].Type != "user_id" || leaf.Systems[0].Name != "orders" {
		t.Error("EncodeLeaf sorted the caller's slices")
	}
	// A leaf without systems (nothing targeted) still encodes.
	if b, err := certificate.EncodeLeaf(certificate.Leaf{Status: "completed", Subject: leaf.Subject[:1]}); err != nil ||
		string(b) != "19:lethe.batch-leaf.v1,9:completed,1:1,7:user_id,2:cd,1:0," {
		t.Errorf("leaf without systems = %q, %v", b, err)
	}
}

func TestLeafRefuses(t *testing.T) {
	ok := func() certificate.Leaf {
		return certificate.Leaf{
			Status:  "completed",
			Subject: []certificate.Digest{{Type: "email", Digest: "ab"}},
			Systems: []certificate.LeafSystem{{Name: "orders", Outcome: "erased", Records: 1}},
		}
	}
	if _, err := certificate.EncodeLeaf(ok()); err != nil {
		t.Fatalf("the valid leaf: %v", err)
	}
	for name, change := range map[string]func(l *certificate.Leaf){
		"no status":           func(l *certificate.Leaf) { l.Status = "" },
		"no identifier":       func(l *certificate.Leaf) { l.Subject = nil },
		"identifier twice":    func(l *certificate.Leaf) { l.Subject = append(l.Subject, l.Subject[0]) },
		"empty digest":        func(l *certificate.Leaf) { l.Subject[0].Digest = "" },
		"empty type":          func(l *certificate.Leaf) { l.Subject[0].Type = "" },
		"system twice":        func(l *certificate.Leaf) { l.Systems = append(l.Systems, l.Systems[0]) },
		"empty system name":   func(l *certificate.Leaf) { l.Systems[0].Name = "" },
		"empty outcome":       func(l *certificate.Leaf) { l.Systems[0].Outcome = "" },
		"negative records":    func(l *certificate.Leaf) { l.Systems[0].Records = -1 },
		"status not UTF-8":    func(l *certificate.Leaf) { l.Status = "\xff" },
		"system not UTF-8":    func(l *certificate.Leaf) { l.Systems[0].Name = "a\xc3" },
		"identifier not UTF8": func(l *certificate.Leaf) { l.Subject[0].Type = "\xfe" },
	} {
		l := ok()
		change(&l)
		if _, err := certificate.EncodeLeaf(l); err == nil {
			t.Errorf("%s: encodes", name)
		}
		var tally certificate.Tally
		if err := tally.Add(l); err == nil || tally.Size() != 0 {
			t.Errorf("%s: Tally.Add = %v, size %d; want an error and nothing added", name, err, tally.Size())
		}
	}
}

// batchLeaf is subject i of a test batch: two identifiers, three systems,
// outcomes that vary with i.
func batchLeaf(i int) certificate.Leaf {
	sum := func(s string) string {
		h := sha256.Sum256(fmt.Appendf(nil, "%s-%d", s, i))
		return hex.EncodeToString(h[:])
	}
	l := certificate.Leaf{
		Status:  "completed",
		Subject: []certificate.Digest{{Type: "email", Digest: sum("email")}, {Type: "user_id", Digest: sum("user")}},
		Systems: []certificate.LeafSystem{
			{Name: "accounts", Outcome: "erased", Records: int64(i%4 + 1)},
			{Name: "billing", Outcome: "not_found"},
			{Name: "orders", Outcome: "erased", Records: 2},
		},
	}
	switch {
	case i%10 == 3:
		l.Systems[1] = certificate.LeafSystem{Name: "billing", Outcome: "retained", Records: 1}
	case i%10 == 7:
		l.Status = "failed"
		l.Systems[2] = certificate.LeafSystem{Name: "orders", Outcome: "failed"}
	}
	return l
}

const testBatchID = "9b7c0000-0000-4000-8000-000000000014"

// batchFacts is a finished batch of n subjects.
func batchFacts(t testing.TB, id string, n int) certificate.BatchFacts {
	t.Helper()
	tally := &certificate.Tally{}
	for i := range n {
		if err := tally.Add(batchLeaf(i)); err != nil {
			t.Fatal(err)
		}
	}
	return certificate.BatchFacts{
		ID: id, Status: lethe.RequestFailed, Reason: "retention_policy", RequestedBy: "ticket PRIV-88",
		CreatedBy: "token:retention-job", CreatedAt: t0, FinishedAt: ptr(t0.Add(90 * time.Minute)),
		Leaves:    tally,
		BatchLast: certificate.Link{Seq: 4100, Hash: strings.Repeat("3c", 32)},
		ChainHead: certificate.Link{Seq: 4107, Hash: strings.Repeat("4d", 32)},
	}
}

// issueBatch signs a batch certificate of n subjects.
func issueBatch(t testing.TB, s *certificate.Signer, id string, n int) []byte {
	t.Helper()
	c, err := certificate.BuildBatch(batchFacts(t, id, n), t0.Add(2*time.Hour))
	if err != nil {
		t.Fatalf("BuildBatch: %v", err)
	}
	file, err := s.SignBatch(c)
	if err != nil {
		t.Fatalf("SignBatch: %v", err)
	}
	return file
}

func TestBatchSignAndVerify(t *testing.T) {
	s := testSigner(t, 1)
	const n = 25
	file := issueBatch(t, s, testBatchID, n)
	c, key, err := certificate.VerifyBatch(file, []ed25519.PublicKey{testSigner(t, 2).Public(), s.Public()})
	if err != nil {
		t.Fatalf("VerifyBatch: %v\n%s", err, file)
	}
	if !key.Equal(s.Public()) {
		t.Errorf("verified with %x, want the signer's key", key)
	}
	leaves := make([]merkle.Hash, n)
	for i := range leaves {
		leaves[i], _ = certificate.LeafHash(batchLeaf(i))
	}
	wantRoot := merkle.NewTree(leaves).Root().String()
	if c.Format != certificate.BatchFormat || c.BatchID != testBatchID || c.Status != "failed" ||
		c.RequestedBy != "ticket PRIV-88" || c.CreatedBy != "token:retention-job" ||
		!c.FinishedAt.Equal(t0.Add(90*time.Minute)) || c.Tree.Size != n || c.Tree.Root != wantRoot ||
		c.Tree.LeafFormat != certificate.LeafFormat || c.Audit.ChainHead.Seq != 4107 || c.Audit.BatchLast.Seq != 4100 {
		t.Errorf("verified document = %+v, want the facts it was built from (root %s)", c, wantRoot)
	}
	// Subjects 7 and 17 failed; 3, 13 and 23 were retained by billing.
	if c.Subjects.Total != n || c.Subjects.ByStatus["completed"] != 23 || c.Subjects.ByStatus["failed"] != 2 || len(c.Subjects.ByStatus) != 2 {
		t.Errorf("subjects = %+v, want 23 completed and 2 failed", c.Subjects)
	}
	if len(c.Systems) != 3 || c.Systems[0].Name != "accounts" || c.Systems[0].ByOutcome["erased"] != n ||
		c.Systems[1].ByOutcome["retained"] != 3 || c.Systems[1].ByOutcome["not_found"] != 22 ||
		c.Systems[2].ByOutcome["failed"] != 2 || c.Systems[2].ByOutcome["erased"] != 23 {
		t.Errorf("systems = %+v", c.Systems)
	}
	if again := issueBatch(t, s, testBatchID, n); !bytes.Equal(again, file) {
		t.Error("signing the same batch twice gave two files")
	}
	if bytes.Contains(file, []byte(batchLeaf(0).Subject[0].Digest)) {
		t.Error("the batch certificate lists a subject's digest; it should hold the root only")
	}

	// Each kind of certificate goes to its own verifier.
	if _, _, err := certificate.Verify(file, []ed25519.PublicKey{s.Public()}); !errors.Is(err, certificate.ErrBatchCertificate) {
		t.Errorf("Verify of a batch certificate = %v, want ErrBatchCertificate", err)
	}
	if _, _, err := certificate.VerifyBatch(issue(t, s), []ed25519.PublicKey{s.Public()}); err == nil {
		t.Error("VerifyBatch accepted a request's certificate")
	}
	if got := certificate.FormatOf(file); got != certificate.BatchFormat {
		t.Errorf("FormatOf = %q", got)
	}
	if _, _, err := certificate.VerifyBatch(file, []ed25519.PublicKey{testSigner(t, 2).Public()}); !errors.Is(err, certificate.ErrUnknownKey) {
		t.Errorf("VerifyBatch with another key = %v, want ErrUnknownKey", err)
	}
}

// TestBatchVerifyFailsAfterAnyByteChanges flips, replaces and deletes every
// byte of a batch certificate.
func TestBatchVerifyFailsAfterAnyByteChanges(t *testing.T) {
	s := testSigner(t, 1)
	keys := []ed25519.PublicKey{s.Public()}
	file := issueBatch(t, s, testBatchID, 5)
	for i := range file {
		flipped := bytes.Clone(file)
		flipped[i] ^= 0x01
		replaced := bytes.Clone(file)
		replaced[i] = '0'
		if file[i] == '0' {
			replaced[i] = '1'
		}
		for what, changed := range map[string][]byte{"flipping the low bit": flipped, "replacing": replaced} {
			if _, _, err := certificate.VerifyBatch(changed, keys); err == nil {
				t.Errorf("%s at byte %d (%q) still verifies", what, i, file[i])
			}
		}
		if i < len(file)-1 {
			if _, _, err := certificate.VerifyBatch(append(bytes.Clone(file[:i]), file[i+1:]...), keys); err == nil {
				t.Errorf("deleting byte %d (%q) still verifies", i, file[i])
			}
		}
	}
	if _, _, err := certificate.VerifyBatch(compact(t, file), keys); !errors.Is(err, certificate.ErrNotCanonical) {
		t.Errorf("compact re-encoding: %v, want ErrNotCanonical", err)
	}
}

// TestBatchVerifyRefusesInconsistent: a properly signed certificate whose
// numbers disagree does not verify.
func TestBatchVerifyRefusesInconsistent(t *testing.T) {
	s := testSigner(t, 1)
	for name, change := range map[string]func(c *certificate.BatchCertificate){
		"size is not total":    func(c *certificate.BatchCertificate) { c.Tree.Size++ },
		"statuses do not sum":  func(c *certificate.BatchCertificate) { c.Subjects.ByStatus["failed"]++ },
		"negative count":       func(c *certificate.BatchCertificate) { c.Subjects.ByStatus["x"] = -1 },
		"system over total":    func(c *certificate.BatchCertificate) { c.Systems[0].ByOutcome["failed"] = 1 },
		"root not a hash":      func(c *certificate.BatchCertificate) { c.Tree.Root = "00" },
		"unknown leaf format":  func(c *certificate.BatchCertificate) { c.Tree.LeafFormat = "lethe.batch-leaf.v9" },
		"unknown batch format": func(c *certificate.BatchCertificate) { c.Format = "lethe.batch-certificate.v9" },
	} {
		c, err := certificate.BuildBatch(batchFacts(t, testBatchID, 5), t0)
		if err != nil {
			t.Fatal(err)
		}
		change(c)
		file, err := s.SignBatch(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := certificate.VerifyBatch(file, []ed25519.PublicKey{s.Public()}); err == nil {
			t.Errorf("%s: verifies", name)
		}
	}
}

func TestBuildBatchRefuses(t *testing.T) {
	f := batchFacts(t, testBatchID, 3)
	f.Status, f.FinishedAt = lethe.RequestRunning, nil
	if _, err := certificate.BuildBatch(f, t0); lethe.ErrorKind(err) != lethe.KindConflict || lethe.ErrorCode(err) != "not_finished" {
		t.Errorf("BuildBatch of a running batch = %v, want conflict not_finished", err)
	}
	f = batchFacts(t, testBatchID, 0)
	if _, err := certificate.BuildBatch(f, t0); err == nil {
		t.Error("BuildBatch of an empty batch succeeded")
	}
}

// batchProof is the proof file of subject i of the test batch of n.
func batchProof(t testing.TB, id string, n, i int) []byte {
	t.Helper()
	leaves := make([]merkle.Hash, n)
	for j := range leaves {
		var err error
		if leaves[j], err = certificate.LeafHash(batchLeaf(j)); err != nil {
			t.Fatal(err)
		}
	}
	mp, err := merkle.NewTree(leaves).Proof(uint64(i))
	if err != nil {
		t.Fatal(err)
	}
	p, err := certificate.NewProof(id, batchLeaf(i), mp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certificate.EncodeProof(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProofs checks every subject's proof of a batch of 25 and that a proof
// fails once its leaf, index, size, path or batch changes.
func TestProofs(t *testing.T) {
	s := testSigner(t, 1)
	const n = 25
	c, _, err := certificate.VerifyBatch(issueBatch(t, s, testBatchID, n), []ed25519.PublicKey{s.Public()})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := certificate.VerifyBatch(issueBatch(t, s, "9b7c0000-0000-4000-8000-000000000015", n+1), []ed25519.PublicKey{s.Public()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		file := batchProof(t, testBatchID, n, i)
		p, err := certificate.ParseProof(file)
		if err != nil {
			t.Fatalf("ParseProof: %v\n%s", err, file)
		}
		if err := certificate.VerifyProof(c, p); err != nil {
			t.Fatalf("subject %d: VerifyProof: %v", i, err)
		}
		if p.Leaf.Subject[0].Digest != batchLeaf(i).Subject[0].Digest || p.LeafIndex != uint64(i) || p.TreeSize != n {
			t.Errorf("subject %d: proof = %+v", i, p)
		}
		if bytes.Contains(file, []byte(batchLeaf((i + 1) % n).Subject[0].Digest)) {
			t.Errorf("subject %d: the proof names another subject's digest", i)
		}
		if err := certificate.VerifyProof(other, p); !errors.Is(err, certificate.ErrOtherBatch) {
			t.Errorf("subject %d against another batch: %v, want ErrOtherBatch", i, err)
		}
	}

	p, err := certificate.ParseProof(batchProof(t, testBatchID, n, 7))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(p *certificate.Proof)
		want   error
	}{
		{"status", func(p *certificate.Proof) { p.Leaf.Status = "completed" }, certificate.ErrNotInBatch},
		{"outcome", func(p *certificate.Proof) { p.Leaf.Systems[2].Outcome = "erased" }, certificate.ErrNotInBatch},
		{"records", func(p *certificate.Proof) { p.Leaf.Systems[0].Records++ }, certificate.ErrNotInBatch},
		{"a system left out", func(p *certificate.Proof) { p.Leaf.Systems = p.Leaf.Systems[1:] }, certificate.ErrNotInBatch},
		{"an identifier left out", func(p *certificate.Proof) { p.Leaf.Subject = p.Leaf.Subject[1:] }, certificate.ErrNotInBatch},
		{"another subject's digest", func(p *certificate.Proof) { p.Leaf.Subject[0].Digest = batchLeaf(8).Subject[0].Digest }, certificate.ErrNotInBatch},
		{"another subject's leaf", func(p *certificate.Proof) { p.Leaf = batchLeaf(6) }, certificate.ErrNotInBatch},
		{"index", func(p *certificate.Proof) { p.LeafIndex = 6 }, certificate.ErrNotInBatch},
		{"index outside", func(p *certificate.Proof) { p.LeafIndex = n }, certificate.ErrNotInBatch},
		{"path entry", func(p *certificate.Proof) { p.AuditPath[1] = strings.Repeat("0", 64) }, certificate.ErrNotInBatch},
		{"path entry not hex", func(p *certificate.Proof) { p.AuditPath[1] = "zz" }, certificate.ErrNotInBatch},
		{"path shortened", func(p *certificate.Proof) { p.AuditPath = p.AuditPath[:len(p.AuditPath)-1] }, certificate.ErrNotInBatch},
		{"tree size", func(p *certificate.Proof) { p.TreeSize = n + 1 }, certificate.ErrOtherTree},
		{"batch id", func(p *certificate.Proof) { p.BatchID = "other" }, certificate.ErrOtherBatch},
		{"invalid leaf", func(p *certificate.Proof) { p.Leaf.Subject = nil }, certificate.ErrInvalidLeaf},
	} {
		q := *p
		q.Leaf = certificate.Leaf{Status: p.Leaf.Status,
			Subject: append([]certificate.Digest(nil), p.Leaf.Subject...),
			Systems: append([]certificate.LeafSystem(nil), p.Leaf.Systems...)}
		q.AuditPath = append([]string(nil), p.AuditPath...)
		tc.change(&q)
		if err := certificate.VerifyProof(c, &q); !errors.Is(err, tc.want) {
			t.Errorf("%s changed: VerifyProof = %v, want %v", tc.name, err, tc.want)
		}
	}

	good := batchProof(t, testBatchID, n, 7)
	for name, f := range map[string][]byte{
		"unknown field": bytes.Replace(good, []byte(`"leaf_index"`), []byte(`"root": "00", "leaf_index"`), 1),
		"other format":  bytes.Replace(good, []byte(certificate.ProofFormat), []byte("lethe.batch-inclusion-proof.v9"), 1),
		"two documents": append(bytes.Clone(good), good...),
		"not json":      []byte("proof"),
		"too large":     bytes.Repeat([]byte(" "), certificate.MaxSize+1),
	} {
		if _, err := certificate.ParseProof(f); err == nil {
			t.Errorf("ParseProof accepted %s", name)
		}
	}
}

// TestBatchGolden verifies the batch certificate and proof in testdata,
// written by this code's first version (go test -run TestBatchGolden
// -update rewrites them): a change of the leaf encoding, the tree or the
// documents that would break certificates already issued fails here.
func TestBatchGolden(t *testing.T) {
	s := testSigner(t, 1)
	const n = 25
	certFile, proofFile := "testdata/batch.certificate.json", "testdata/batch.proof-7.json"
	if *updateGolden {
		os.WriteFile(certFile, issueBatch(t, s, testBatchID, n), 0o644)
		os.WriteFile(proofFile, batchProof(t, testBatchID, n, 7), 0o644)
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := os.ReadFile(proofFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert, issueBatch(t, s, testBatchID, n)) || !bytes.Equal(proof, batchProof(t, testBatchID, n, 7)) {
		t.Error("the code no longer issues the files in testdata byte for byte")
	}
	c, _, err := certificate.VerifyBatch(cert, []ed25519.PublicKey{s.Public()})
	if err != nil {
		t.Fatalf("VerifyBatch of %s: %v", certFile, err)
	}
	p, err := certificate.ParseProof(proof)
	if err != nil {
		t.Fatal(err)
	}
	if err := certificate.VerifyProof(c, p); err != nil {
		t.Errorf("VerifyProof of %s: %v", proofFile, err)
	}
}

// BenchmarkTally100k streams a full batch of 100,000 leaves (two
// identifiers, three systems each) into a Tally: its memory per run does
// not grow with the batch beyond the leaves' own encoding.
func BenchmarkTally100k(b *testing.B) {
	leaves := make([]certificate.Leaf, 100_000)
	for i := range leaves {
		leaves[i] = batchLeaf(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		var tally certificate.Tally
		for _, l := range leaves {
			if err := tally.Add(l); err != nil {
				b.Fatal(err)
			}
		}
		_ = tally.Root()
	}
}
