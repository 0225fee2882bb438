package certificate_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func testSigner(t testing.TB, b byte) *certificate.Signer {
	t.Helper()
	s, err := certificate.NewSigner(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// testFacts is a finished request with every kind of field: several
// systems, one never confirmed, text beyond ASCII and characters JSON
// escapes.
func testFacts() certificate.Facts {
	return certificate.Facts{
		Erasure: lethe.Erasure{
			ID:          "6f1c0000-0000-4000-8000-000000000001",
			Status:      lethe.RequestCompleted,
			Reason:      "gdpr_art17",
			CreatedBy:   "token:support-desk",
			CreatedAt:   t0,
			Deadline:    t0.Add(lethe.DefaultDeadline),
			CompletedAt: ptr(t0.Add(2*time.Minute + 345678*time.Microsecond)),
			Systems: []lethe.SystemProgress{
				{Name: "accounts", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: ptr(t0.Add(time.Second))},
				{Name: "billing", Status: lethe.SystemRetained, Attempts: 2, Records: 1, ConfirmedAt: ptr(t0.Add(time.Minute)),
					Detail: "HGB §257 <10 years> & \"tax\" records"},
				{Name: "orders", Status: lethe.SystemFailed, Attempts: 5},
			},
		},
		Subject: []lethe.SubjectDigest{
			{Type: "email", Digest: strings.Repeat("ab", 32)},
			{Type: "user_id", Digest: strings.Repeat("cd", 32)},
		},
		RequestLast: certificate.Link{Seq: 41, Hash: strings.Repeat("1f", 32)},
		ChainHead:   certificate.Link{Seq: 57, Hash: strings.Repeat("e0", 32)},
	}
}

// issue signs the test facts and returns the served file.
func issue(t *testing.T, s *certificate.Signer) []byte {
	t.Helper()
	c, err := certificate.Build(testFacts(), t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	file, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return file
}

func TestSignAndVerify(t *testing.T) {
	s := testSigner(t, 1)
	file := issue(t, s)
	if !bytes.HasSuffix(file, []byte("}\n")) {
		t.Errorf("file does not end with one newline: %q", file[len(file)-5:])
	}
	c, key, err := certificate.Verify(file, []ed25519.PublicKey{testSigner(t, 2).Public(), s.Public()})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !key.Equal(s.Public()) {
		t.Errorf("verified with %x, want the signer's key", key)
	}
	want, _ := certificate.Build(testFacts(), t0.Add(time.Hour))
	if c.RequestID != want.RequestID || c.Status != "completed" || len(c.Systems) != 3 ||
		!c.CompletedAt.Equal(*testFacts().Erasure.CompletedAt) || c.Systems[2].ConfirmedAt != nil ||
		c.Systems[1].Detail != testFacts().Erasure.Systems[1].Detail || c.Audit.ChainHead.Seq != 57 ||
		c.Signature.KeyID != s.KeyID() || c.Signature.Algorithm != "Ed25519" ||
		c.Format != certificate.Format || c.CreatedBy == nil || *c.CreatedBy != "token:support-desk" {
		t.Errorf("verified document = %+v, want the facts it was built from", c)
	}
	// Without its final newline the file is still the same certificate.
	if _, _, err := certificate.Verify(bytes.TrimSuffix(file, []byte("\n")), []ed25519.PublicKey{s.Public()}); err != nil {
		t.Errorf("Verify without the final newline: %v", err)
	}
	// Signing is deterministic: the same facts give the same file.
	if again := issue(t, s); !bytes.Equal(again, file) {
		t.Errorf("signing the same facts twice gave two files")
	}
}

// TestVerifyFailsAfterAnyByteChanges changes every byte of a real
// certificate in two ways (its low bit flipped, and replaced by a
// character that keeps most JSON valid) and deletes every byte, and checks
// that each changed file fails to verify.
func TestVerifyFailsAfterAnyByteChanges(t *testing.T) {
	s := testSigner(t, 1)
	keys := []ed25519.PublicKey{s.Public()}
	file := issue(t, s)
	if _, _, err := certificate.Verify(file, keys); err != nil {
		t.Fatalf("the original does not verify: %v", err)
	}
	check := func(what string, i int, changed []byte) {
		t.Helper()
		if _, _, err := certificate.Verify(changed, keys); err == nil {
			t.Errorf("%s at byte %d (%q) still verifies", what, i, file[i])
		}
	}
	for i := range file {
		flipped := bytes.Clone(file)
		flipped[i] ^= 0x01
		check("flipping the low bit", i, flipped)

		replaced := bytes.Clone(file)
		replaced[i] = '0'
		if file[i] == '0' {
			replaced[i] = '1'
		}
		check("replacing", i, replaced)

		if i == len(file)-1 {
			continue // the final newline may be left out
		}
		deleted := append(bytes.Clone(file[:i]), file[i+1:]...)
		check("deleting", i, deleted)
	}
	for _, extra := range []string{"\n", " ", "\r\n"} {
		if _, _, err := certificate.Verify(append(bytes.Clone(file), extra...), keys); err == nil {
			t.Errorf("the file followed by %q still verifies", extra)
		}
	}
	// Re-encodings that parse to the very same document are refused too.
	for name, variant := range map[string][]byte{
		"compact":          compact(t, file),
		"escaped letter":   bytes.Replace(file, []byte(`"completed"`), []byte(`"\u0063ompleted"`), 1),
		"tab indentation":  bytes.ReplaceAll(file, []byte("\n  "), []byte("\n\t")),
		"key case changed": bytes.Replace(file, []byte(`"reason"`), []byte(`"Reason"`), 1),
	} {
		if bytes.Equal(variant, file) {
			t.Fatalf("%s: variant equals the original", name)
		}
		if _, _, err := certificate.Verify(variant, keys); !errors.Is(err, certificate.ErrNotCanonical) {
			t.Errorf("%s: Verify = %v, want ErrNotCanonical", name, err)
		}
	}
}

func compact(t *testing.T, file []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, line := range strings.Split(string(file), "\n") {
		b.WriteString(strings.TrimLeft(line, " "))
	}
	return b.Bytes()
}

func TestVerifyRefuses(t *testing.T) {
	s := testSigner(t, 1)
	other := testSigner(t, 2)
	file := issue(t, s)

	if _, _, err := certificate.Verify(file, []ed25519.PublicKey{other.Public()}); !errors.Is(err, certificate.ErrUnknownKey) {
		t.Errorf("Verify with another key = %v, want ErrUnknownKey", err)
	}
	if _, _, err := certificate.Verify(file, nil); !errors.Is(err, certificate.ErrUnknownKey) {
		t.Errorf("Verify with no key = %v, want ErrUnknownKey", err)
	}
	// Re-signed by another key under the first key's id: the signature fails.
	c, _ := certificate.Build(testFacts(), t0)
	forged, _ := other.Sign(c)
	forged = bytes.Replace(forged, []byte(other.KeyID()), []byte(s.KeyID()), 1)
	if _, _, err := certificate.Verify(forged, []ed25519.PublicKey{s.Public()}); !errors.Is(err, certificate.ErrBadSignature) {
		t.Errorf("Verify of a signature by another key = %v, want ErrBadSignature", err)
	}
	for name, f := range map[string][]byte{
		"empty":     nil,
		"not json":  []byte("certificate"),
		"two docs":  append(bytes.Clone(file), file...),
		"too large": bytes.Repeat([]byte(" "), certificate.MaxSize+1),
	} {
		if _, _, err := certificate.Verify(f, []ed25519.PublicKey{s.Public()}); err == nil {
			t.Errorf("%s: verifies", name)
		}
	}
}

// TestVersion1StillVerifies checks a certificate that the code before
// created_by issued (testdata/v1.certificate.json, signed with the key of
// testSigner(t, 1)), byte for byte, and that each version keeps its shape:
// a v2 document without created_by, or a v1 document with it, is refused
// even when properly signed.
func TestVersion1StillVerifies(t *testing.T) {
	s := testSigner(t, 1)
	keys := []ed25519.PublicKey{s.Public()}
	old, err := os.ReadFile("testdata/v1.certificate.json")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := certificate.Verify(old, keys)
	if err != nil {
		t.Fatalf("the version 1 certificate does not verify: %v", err)
	}
	if c.Format != certificate.FormatV1 || c.CreatedBy != nil || c.RequestID != testFacts().Erasure.ID {
		t.Errorf("version 1 document = format %q created_by %v request %s", c.Format, c.CreatedBy, c.RequestID)
	}
	if bytes.Contains(old, []byte("created_by")) {
		t.Fatal("the version 1 file names created_by; it must predate it")
	}
	// Changed in one byte, the old file fails like a new one.
	changed := bytes.Replace(old, []byte(`"records": 3`), []byte(`"records": 4`), 1)
	if _, _, err := certificate.Verify(changed, keys); !errors.Is(err, certificate.ErrBadSignature) {
		t.Errorf("a changed version 1 file: Verify = %v, want ErrBadSignature", err)
	}

	for name, change := range map[string]func(c *certificate.Certificate){
		"v2 without created_by": func(c *certificate.Certificate) { c.CreatedBy = nil },
		"v1 with created_by":    func(c *certificate.Certificate) { c.Format = certificate.FormatV1 },
		"unknown format":        func(c *certificate.Certificate) { c.Format = "lethe.erasure-certificate.v3" },
	} {
		c, err := certificate.Build(testFacts(), t0)
		if err != nil {
			t.Fatal(err)
		}
		change(c)
		file, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := certificate.Verify(file, keys); err == nil {
			t.Errorf("%s: verifies", name)
		}
	}
}

// TestCreatedByIsAlwaysPresent: a request nobody authenticated for still
// states so, with an empty created_by, rather than leaving the field out.
func TestCreatedByIsAlwaysPresent(t *testing.T) {
	s := testSigner(t, 1)
	f := testFacts()
	f.Erasure.CreatedBy = ""
	c, err := certificate.Build(f, t0)
	if err != nil {
		t.Fatal(err)
	}
	file, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, []byte(`"created_by": "",`)) {
		t.Errorf("certificate lacks an empty created_by:\n%s", file)
	}
	if _, _, err := certificate.Verify(file, []ed25519.PublicKey{s.Public()}); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestBuildRefusesUnfinishedRequests(t *testing.T) {
	f := testFacts()
	f.Erasure.Status = lethe.RequestRunning
	f.Erasure.CompletedAt = nil
	_, err := certificate.Build(f, t0)
	if lethe.ErrorKind(err) != lethe.KindConflict || lethe.ErrorCode(err) != "not_finished" {
		t.Errorf("Build of a running request = %v, want conflict not_finished", err)
	}
}

func TestKeys(t *testing.T) {
	seed := strings.Repeat("0a", 32)
	s, err := certificate.ParseSigningKey(seed)
	if err != nil {
		t.Fatalf("ParseSigningKey: %v", err)
	}
	raw, _ := hex.DecodeString(seed)
	direct, _ := certificate.NewSigner(raw)
	if s.KeyID() != direct.KeyID() || len(s.KeyID()) != 16 || s.KeyID() != certificate.KeyID(s.Public()) {
		t.Errorf("key ids %q, %q; want one 16-digit id derived from the public key", s.KeyID(), direct.KeyID())
	}
	for _, bad := range []string{"", "abc", strings.Repeat("zz", 32), strings.Repeat("0a", 33)} {
		if _, err := certificate.ParseSigningKey(bad); err == nil {
			t.Errorf("ParseSigningKey(%q) accepted", bad)
		}
	}
	pub := s.Public()
	for _, form := range []string{
		hex.EncodeToString(pub), base64.StdEncoding.EncodeToString(pub),
		base64.RawURLEncoding.EncodeToString(pub), " " + hex.EncodeToString(pub) + "\n",
	} {
		k, err := certificate.ParsePublicKey(form)
		if err != nil || !k.Equal(pub) {
			t.Errorf("ParsePublicKey(%q) = %x, %v", form, k, err)
		}
	}
	if _, err := certificate.ParsePublicKey("c2hvcnQ="); err == nil {
		t.Error("ParsePublicKey accepted 5 bytes")
	}

	retired := testSigner(t, 3).Public()
	list, err := certificate.ParsePublicKeys(hex.EncodeToString(retired) + ", ," + base64.StdEncoding.EncodeToString(pub))
	if err != nil || len(list) != 2 {
		t.Fatalf("ParsePublicKeys = %d keys, %v; want 2", len(list), err)
	}
	set := certificate.Keys(s, list)
	if len(set.Keys) != 2 || !set.Keys[0].Active || set.Keys[0].KeyID != s.KeyID() ||
		set.Keys[1].Active || set.Keys[1].KeyID != certificate.KeyID(retired) || set.Keys[1].Algorithm != "Ed25519" {
		t.Errorf("Keys = %+v, want the active key first and the retired one once", set)
	}
	if empty := certificate.Keys(nil, nil); empty.Keys == nil || len(empty.Keys) != 0 {
		t.Errorf("Keys(nil, nil) = %+v, want an empty list", empty)
	}
	doc := []byte(`{"keys":[{"kid":"` + s.KeyID() + `","alg":"Ed25519","public_key":"` +
		base64.StdEncoding.EncodeToString(pub) + `","active":true}]}`)
	keys, err := certificate.ParseKeySet(doc)
	if err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Errorf("ParseKeySet = %v, %v", keys, err)
	}
	if _, err := certificate.ParseKeySet(bytes.Replace(doc, []byte(s.KeyID()), []byte("0000000000000000"), 1)); err == nil {
		t.Error("ParseKeySet accepted a kid that does not name its key")
	}
	if _, err := certificate.ParseKeySet([]byte(`{"keys":[]}`)); err == nil {
		t.Error("ParseKeySet accepted a set without keys")
	}
}

// memStore is an in-memory certificate.Store.
type memStore struct {
	mu     sync.Mutex
	facts  certificate.Facts
	stored map[string][]byte
	saves  int
}

func (m *memStore) StoredCertificate(ctx context.Context, id string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	doc, ok := m.stored[id]
	return doc, ok, nil
}

func (m *memStore) CertificateFacts(ctx context.Context, id string) (certificate.Facts, error) {
	if id != m.facts.Erasure.ID {
		return certificate.Facts{}, lethe.Errorf(lethe.KindNotFound, "erasure_not_found", "no such erasure request")
	}
	return m.facts, nil
}

func (m *memStore) SaveCertificate(ctx context.Context, id, kid string, at time.Time, doc []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if old, ok := m.stored[id]; ok {
		return old, nil
	}
	m.stored[id] = doc
	return doc, nil
}

func TestIssuer(t *testing.T) {
	ctx := context.Background()
	s := testSigner(t, 1)
	st := &memStore{facts: testFacts(), stored: map[string][]byte{}}
	clock := t0.Add(time.Hour)
	iss := &certificate.Issuer{Store: st, Signer: s, Now: func() time.Time { return clock }}
	id := st.facts.Erasure.ID

	first, err := iss.Certificate(ctx, id)
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	if _, _, err := certificate.Verify(first, []ed25519.PublicKey{s.Public()}); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}
	// Later, after the facts changed, the stored certificate is served.
	clock = clock.Add(time.Hour)
	st.facts.Erasure.Systems = nil
	again, err := iss.Certificate(ctx, id)
	if err != nil || !bytes.Equal(again, first) || st.saves != 1 {
		t.Errorf("second Certificate = %v, %d saves; want the stored file and one save", err, st.saves)
	}
	// Without a key, stored certificates are still served.
	noKey := &certificate.Issuer{Store: st}
	if doc, err := noKey.Certificate(ctx, id); err != nil || !bytes.Equal(doc, first) {
		t.Errorf("Certificate without a key, stored = %v", err)
	}

	fresh := &memStore{facts: testFacts(), stored: map[string][]byte{}}
	_, err = (&certificate.Issuer{Store: fresh}).Certificate(ctx, id)
	if lethe.ErrorKind(err) != lethe.KindUnavailable || lethe.ErrorCode(err) != "signing_key_missing" {
		t.Errorf("Certificate without a key, not stored = %v, want unavailable signing_key_missing", err)
	}
	if _, err := (&certificate.Issuer{Store: fresh, Signer: s}).Certificate(ctx, "unknown"); lethe.ErrorCode(err) != "erasure_not_found" {
		t.Errorf("Certificate of an unknown request = %v, want erasure_not_found", err)
	}
	fresh.facts.Erasure.Status = lethe.RequestRunning
	fresh.facts.Erasure.CompletedAt = nil
	if _, err := (&certificate.Issuer{Store: fresh, Signer: s}).Certificate(ctx, id); lethe.ErrorCode(err) != "not_finished" {
		t.Errorf("Certificate of a running request = %v, want not_finished", err)
	}
}
