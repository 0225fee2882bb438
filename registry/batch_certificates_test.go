package registry_test

import (
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/certificate/merkle"
	"github.com/lethe-dev/lethe/registry"
)

// leavesFixture is a batch of three subjects: 0 completed (orders erased 2
// records, crm not_found), 1 failed (orders failed) with a digest a system
// revealed, 2 completed with no system.
func leavesFixture(t *testing.T, s *registry.Store, tag string) registry.NewBatch {
	t.Helper()
	in := newBatch(t0, tag, 3)
	createBatch(t, s, in)
	setSubjects(t, s, in.ID, lethe.RequestCompleted, 0, 2)
	setSubjects(t, s, in.ID, lethe.RequestFailed, 1)
	addOutcome(t, s, in.ID, 0, "orders", lethe.SystemErased, 2)
	addOutcome(t, s, in.ID, 0, "crm", lethe.SystemNotFound, 0)
	addOutcome(t, s, in.ID, 1, "orders", lethe.SystemFailed, 0)
	exec(t, s, `INSERT INTO batch_subject_digests (batch_id, item, id_type, digest, derived)
		VALUES ($1, 1, 'device_id', 'dd1', true)`, in.ID)
	return in
}

func leafDigests(in registry.NewBatch, item int) []certificate.Digest {
	var out []certificate.Digest
	for _, d := range in.Subjects[item].Digests {
		out = append(out, certificate.Digest{Type: d.Type, Digest: d.Digest})
	}
	return out
}

func TestBatchLeaves(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := leavesFixture(t, s, "leaves")

	got, err := s.BatchLeaves(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []certificate.Leaf{
		{Status: "completed", Subject: leafDigests(in, 0), Systems: []certificate.LeafSystem{
			{Name: "crm", Outcome: "not_found"}, {Name: "orders", Outcome: "erased", Records: 2}}},
		{Status: "failed", Subject: append([]certificate.Digest{{Type: "device_id", Digest: "dd1"}}, leafDigests(in, 1)...),
			Systems: []certificate.LeafSystem{{Name: "orders", Outcome: "failed"}}},
		{Status: "completed", Subject: leafDigests(in, 2), Systems: []certificate.LeafSystem{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("leaves = %+v\nwant %+v", got, want)
	}
	for i, l := range got {
		if c, err := l.Canonical(); err != nil || !reflect.DeepEqual(c, l) {
			t.Errorf("leaf %d is not already canonical: %+v, %v", i, c, err)
		}
	}
	for _, id := range []string{uuid.NewString(), "nope"} {
		_, err := s.BatchLeaves(ctx, id)
		wantCode(t, err, lethe.KindNotFound, "batch_not_found")
	}
}

func TestBatchSubjectByDigest(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := leavesFixture(t, s, "by-digest")
	other := newBatch(t0, "by-digest-other", 1)
	createBatch(t, s, other)

	for name, tc := range map[string]struct {
		digest string
		item   int
	}{
		"first subject by email":  {in.Subjects[0].Digests[0].Digest, 0},
		"last subject by user_id": {in.Subjects[2].Digests[1].Digest, 2},
		"a revealed digest":       {"dd1", 1},
	} {
		if item, err := s.BatchSubjectByDigest(ctx, in.ID, tc.digest); err != nil || item != tc.item {
			t.Errorf("%s: item %d, %v; want %d", name, item, err, tc.item)
		}
	}
	for _, d := range []string{"unknown", other.Subjects[0].Digests[0].Digest} {
		_, err := s.BatchSubjectByDigest(ctx, in.ID, d)
		wantCode(t, err, lethe.KindNotFound, "subject_not_found")
	}
	for _, id := range []string{uuid.NewString(), "nope"} {
		_, err := s.BatchSubjectByDigest(ctx, id, "dd1")
		wantCode(t, err, lethe.KindNotFound, "batch_not_found")
	}
}

func TestBatchCertificateFacts(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := leavesFixture(t, s, "facts")

	_, err := s.BatchCertificateFacts(ctx, in.ID)
	wantCode(t, err, lethe.KindConflict, "not_finished")

	finished := t0.Add(time.Hour)
	if err := s.AppendAudit(ctx, []lethe.AuditEvent{{RequestID: in.ID, Kind: lethe.AuditFailed, At: finished}}); err != nil {
		t.Fatal(err)
	}
	finishBatch(t, s, in.ID, lethe.RequestFailed, finished)
	batchLast, err := s.RequestAuditHead(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	create(t, s, newErasure(t0)) // the chain moves on past the batch's last event
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}

	f, err := s.BatchCertificateFacts(ctx, in.ID)
	if err != nil {
		t.Fatalf("BatchCertificateFacts: %v", err)
	}
	if f.ID != in.ID || f.Status != lethe.RequestFailed || f.DryRun || f.Reason != in.Reason ||
		f.RequestedBy != in.RequestedBy || f.CreatedBy != in.CreatedBy || !f.CreatedAt.Equal(t0) ||
		f.FinishedAt == nil || !f.FinishedAt.Equal(finished) {
		t.Errorf("facts = %+v, want the batch's own", f)
	}
	if f.BatchLast != (certificate.Link{Seq: batchLast.Seq, Hash: batchLast.Hash}) ||
		f.ChainHead != (certificate.Link{Seq: head.Seq, Hash: head.Hash}) || f.BatchLast == f.ChainHead {
		t.Errorf("anchors = %+v, %+v; want the batch's last event %+v and the chain's head %+v", f.BatchLast, f.ChainHead, batchLast, head)
	}

	// The root is the Merkle root of the leaves BatchLeaves gives, in item
	// order, which is what a proof of one subject is checked against.
	leaves, err := s.BatchLeaves(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	hashes := make([]merkle.Hash, len(leaves))
	for i, l := range leaves {
		if hashes[i], err = certificate.LeafHash(l); err != nil {
			t.Fatal(err)
		}
	}
	tree := merkle.NewTree(hashes)
	if f.Leaves.Size() != 3 || f.Leaves.Root() != tree.Root() {
		t.Errorf("tally = %d leaves, root %s; want 3, %s", f.Leaves.Size(), f.Leaves.Root(), tree.Root())
	}

	signer := testSigner(t)
	c, err := certificate.BuildBatch(f, finished.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signer.SignBatch(c)
	if err != nil {
		t.Fatal(err)
	}
	verified, _, err := certificate.VerifyBatch(signed, []ed25519.PublicKey{signer.Public()})
	if err != nil {
		t.Fatalf("VerifyBatch: %v", err)
	}
	if want := map[string]int64{"completed": 2, "failed": 1}; !reflect.DeepEqual(verified.Subjects.ByStatus, want) {
		t.Errorf("subjects by status = %v, want %v", verified.Subjects.ByStatus, want)
	}
	wantSystems := []certificate.BatchSystem{
		{Name: "crm", ByOutcome: map[string]int64{"not_found": 1}},
		{Name: "orders", ByOutcome: map[string]int64{"erased": 1, "failed": 1}},
	}
	if !reflect.DeepEqual(verified.Systems, wantSystems) {
		t.Errorf("systems = %+v, want %+v", verified.Systems, wantSystems)
	}
	item, err := s.BatchSubjectByDigest(ctx, in.ID, "dd1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := tree.Proof(uint64(item))
	if err != nil {
		t.Fatal(err)
	}
	proof, err := certificate.NewProof(in.ID, leaves[item], p)
	if err != nil {
		t.Fatal(err)
	}
	if err := certificate.VerifyProof(verified, proof); err != nil {
		t.Errorf("the proof of subject %d does not verify against the certificate: %v", item, err)
	}

	for _, id := range []string{uuid.NewString(), "nope"} {
		_, err := s.BatchCertificateFacts(ctx, id)
		wantCode(t, err, lethe.KindNotFound, "batch_not_found")
	}
}

// signedBatchCertificate issues the certificate of a finished batch at
// issuedAt.
func signedBatchCertificate(t *testing.T, s *registry.Store, id string, issuedAt time.Time) []byte {
	t.Helper()
	f, err := s.BatchCertificateFacts(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := certificate.BuildBatch(f, issuedAt)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := testSigner(t).SignBatch(c)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestBatchCertificateStorage(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := leavesFixture(t, s, "storage")
	finishBatch(t, s, in.ID, lethe.RequestFailed, t0.Add(time.Hour))
	other := leavesFixture(t, s, "storage-other")
	finishBatch(t, s, other.ID, lethe.RequestFailed, t0.Add(time.Hour))

	if body, found, err := s.GetBatchCertificate(ctx, in.ID); err != nil || found || body != nil {
		t.Fatalf("GetBatchCertificate before any = %q, %v, %v; want none", body, found, err)
	}
	issued := t0.Add(2 * time.Hour)
	first := signedBatchCertificate(t, s, in.ID, issued)
	if err := s.PutBatchCertificate(ctx, in.ID, first); err != nil {
		t.Fatalf("PutBatchCertificate: %v", err)
	}
	later := signedBatchCertificate(t, s, in.ID, issued.Add(time.Hour))
	if err := s.PutBatchCertificate(ctx, in.ID, later); err != nil {
		t.Fatalf("PutBatchCertificate again: %v", err)
	}
	if body, found, err := s.GetBatchCertificate(ctx, in.ID); err != nil || !found || string(body) != string(first) {
		t.Errorf("GetBatchCertificate = found %v, %v; want the first certificate byte for byte", found, err)
	}
	var stored time.Time
	if err := s.DB().QueryRowContext(ctx, `SELECT issued_at FROM batch_certificates WHERE batch_id = $1`, in.ID).Scan(&stored); err != nil || !stored.Equal(issued) {
		t.Errorf("issued_at = %v, %v; want %v", stored, err, issued)
	}

	t.Run("another batch's certificate is refused", func(t *testing.T) {
		if err := s.PutBatchCertificate(ctx, other.ID, first); err == nil {
			t.Errorf("stored the certificate of %s under %s", in.ID, other.ID)
		}
		if err := s.PutBatchCertificate(ctx, other.ID, []byte("not json")); err == nil {
			t.Errorf("stored a document that is not a certificate")
		}
		if _, found, _ := s.GetBatchCertificate(ctx, other.ID); found {
			t.Errorf("a refused certificate was stored")
		}
	})
	t.Run("unknown batch", func(t *testing.T) {
		unknown := uuid.NewString()
		doc, _ := json.Marshal(map[string]any{"format": certificate.BatchFormat, "batch_id": unknown, "issued_at": issued})
		wantCode(t, s.PutBatchCertificate(ctx, unknown, doc), lethe.KindNotFound, "batch_not_found")
		for _, id := range []string{unknown, "nope"} {
			_, _, err := s.GetBatchCertificate(ctx, id)
			wantCode(t, err, lethe.KindNotFound, "batch_not_found")
		}
	})
	t.Run("a stored certificate is never rewritten", func(t *testing.T) {
		if _, err := s.DB().ExecContext(ctx, `UPDATE batch_certificates SET body = 'forged'`); err == nil {
			t.Errorf("a stored batch certificate was rewritten")
		}
	})
}
