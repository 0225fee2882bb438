package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/certificate/merkle"
)

// writeCertificate signs a certificate of a completed request with a key
// made from seed and writes it to a file.
func writeCertificate(t *testing.T, seed byte) (path string, signer *certificate.Signer, file []byte) {
	t.Helper()
	signer, err := certificate.NewSigner(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	done := at.Add(time.Minute)
	c, err := certificate.Build(certificate.Facts{
		Erasure: lethe.Erasure{
			ID: "6f1c0000-0000-4000-8000-000000000001", Status: lethe.RequestCompleted, Reason: "gdpr_art17",
			CreatedBy: "token:support-desk",
			CreatedAt: at, Deadline: at.Add(lethe.DefaultDeadline), CompletedAt: &done,
			Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: &done}},
		},
		Subject:     []lethe.SubjectDigest{{Type: "user_id", Digest: strings.Repeat("ab", 32)}},
		RequestLast: certificate.Link{Seq: 3, Hash: strings.Repeat("1f", 32)},
		ChainHead:   certificate.Link{Seq: 9, Hash: strings.Repeat("2e", 32)},
	}, done)
	if err != nil {
		t.Fatal(err)
	}
	file, err = signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "erasure.certificate.json")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, signer, file
}

func TestCertificateVerifyCommand(t *testing.T) {
	path, signer, file := writeCertificate(t, 1)
	_, other, _ := writeCertificate(t, 2)
	hexKey := hex.EncodeToString(signer.Public())

	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/keys" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(certificate.Keys(other, []ed25519.PublicKey{signer.Public()}))
	}))
	defer keys.Close()

	for name, args := range map[string][]string{
		"hex key":           {"certificate", "verify", "--public-key", hexKey, path},
		"base64 key":        {"certificate", "verify", "--public-key", base64.StdEncoding.EncodeToString(signer.Public()), path},
		"flag after file":   {"certificate", "verify", path, "--public-key", hexKey},
		"several keys":      {"certificate", "verify", "--public-key", hex.EncodeToString(other.Public()) + "," + hexKey, path},
		"keys from the API": {"certificate", "verify", "--keys-url", keys.URL + "/v1/keys", path},
		"key and key set":   {"certificate", "verify", "--keys-url", keys.URL + "/v1/keys", "--public-key", hex.EncodeToString(other.Public()), path},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runCommand(t, nil, args...)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			for _, want := range []string{"is valid: signed by key " + signer.KeyID(), "6f1c0000-0000-4000-8000-000000000001, status completed", "orders", "chain head seq 9", `created by: "token:support-desk"`} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}

	tampered := filepath.Join(t.TempDir(), "tampered.json")
	os.WriteFile(tampered, bytes.Replace(file, []byte(`"records": 3`), []byte(`"records": 4`), 1), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"changed byte", []string{"certificate", "verify", "--public-key", hexKey, tampered}, "does not verify: the signature does not match"},
		{"other key", []string{"certificate", "verify", "--public-key", hex.EncodeToString(other.Public()), path}, "signed by a key not among those given"},
		{"no key", []string{"certificate", "verify", path}, "give --public-key KEY or --keys-url URL"},
		{"bad key", []string{"certificate", "verify", "--public-key", "abc", path}, "not an Ed25519 public key"},
		{"keys url 404", []string{"certificate", "verify", "--keys-url", keys.URL + "/nothing", path}, "404"},
		{"no file", []string{"certificate", "verify", "--public-key", hexKey}, "exactly one FILE"},
		{"two files", []string{"certificate", "verify", "--public-key", hexKey, path, path}, "exactly one FILE"},
		{"missing file", []string{"certificate", "verify", "--public-key", hexKey, path + ".missing"}, "no such file"},
		{"no subcommand", []string{"certificate"}, "name a subcommand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCertificateVerifyCommandVersion1: a certificate issued before
// created_by existed still verifies on the command line.
func TestCertificateVerifyCommandVersion1(t *testing.T) {
	signer, err := certificate.NewSigner(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "certificate", "testdata", "v1.certificate.json")
	out, err := runCommand(t, nil, "certificate", "verify", "--public-key", hex.EncodeToString(signer.Public()), path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !strings.Contains(out, "is valid: signed by key "+signer.KeyID()) || strings.Contains(out, "created by") {
		t.Errorf("output of a version 1 certificate:\n%s", out)
	}
}

// TestCertificateSettings: `lethe api` refuses bad signing and retention
// settings in one line, before it connects to anything.
func TestCertificateSettings(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LETHE_RETENTION": "720h"}, "LETHE_RETENTION needs LETHE_SIGNING_KEY"},
		{map[string]string{"LETHE_RETENTION": "soon"}, `LETHE_RETENTION "soon"`},
		{map[string]string{"LETHE_RETENTION": "-1h"}, `LETHE_RETENTION "-1h"`},
		{map[string]string{"LETHE_SIGNING_KEY": "abc"}, "LETHE_SIGNING_KEY: want an Ed25519 seed of 64 hex digits"},
		{map[string]string{"LETHE_SIGNING_KEYS_RETIRED": "abc"}, "LETHE_SIGNING_KEYS_RETIRED: key 1"},
	} {
		env := map[string]string{"LETHE_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable"}
		for k, v := range tc.env {
			env[k] = v
		}
		if _, err := runCommand(t, env, "api"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lethe api with %v: err = %v, want %q", tc.env, err, tc.want)
		}
	}
	ok := map[string]string{"LETHE_SIGNING_KEY": strings.Repeat("0a", 32), "LETHE_RETENTION": "2160h",
		"LETHE_SIGNING_KEYS_RETIRED": hex.EncodeToString(make([]byte, 32))}
	cfg, err := parseConfig("api", nil, func(k string) string { return ok[k] }, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := cfg.certSettings()
	if err != nil || cs.signer == nil || len(cs.retired) != 1 || cs.retention != 2160*time.Hour {
		t.Errorf("certSettings = %+v, %v", cs, err)
	}
}

// writeBatch signs the certificate of a finished batch of n subjects with
// the key made from seed and writes it and the inclusion proofs of the
// subjects at the given indexes into dir.
func writeBatch(t *testing.T, dir, id string, n int, seed byte, proofsOf ...int) (certPath string, proofPaths []string) {
	t.Helper()
	signer, err := certificate.NewSigner(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(i int) certificate.Leaf {
		status, outcome := "completed", "erased"
		if i == 2 {
			status, outcome = "failed", "failed"
		}
		return certificate.Leaf{
			Status:  status,
			Subject: []certificate.Digest{{Type: "user_id", Digest: fmt.Sprintf("%064x", 1000+i)}},
			Systems: []certificate.LeafSystem{
				{Name: "orders", Outcome: outcome, Records: int64(i)},
				{Name: "accounts", Outcome: "erased", Records: 1},
			},
		}
	}
	tally := &certificate.Tally{}
	hashes := make([]merkle.Hash, n)
	for i := range n {
		if err := tally.Add(leaf(i)); err != nil {
			t.Fatal(err)
		}
		if hashes[i], err = certificate.LeafHash(leaf(i)); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	done := at.Add(time.Hour)
	c, err := certificate.BuildBatch(certificate.BatchFacts{
		ID: id, Status: lethe.RequestFailed, Reason: "retention_policy", RequestedBy: "ticket PRIV-88",
		CreatedBy: "token:retention-job", CreatedAt: at, FinishedAt: &done, Leaves: tally,
		BatchLast: certificate.Link{Seq: 30, Hash: strings.Repeat("1f", 32)},
		ChainHead: certificate.Link{Seq: 31, Hash: strings.Repeat("2e", 32)},
	}, done)
	if err != nil {
		t.Fatal(err)
	}
	file, err := signer.SignBatch(c)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, id+".certificate.json")
	if err := os.WriteFile(certPath, file, 0o600); err != nil {
		t.Fatal(err)
	}
	tree := merkle.NewTree(hashes)
	for _, i := range proofsOf {
		mp, err := tree.Proof(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		p, err := certificate.NewProof(id, leaf(i), mp)
		if err != nil {
			t.Fatal(err)
		}
		b, err := certificate.EncodeProof(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("%s.proof-%d.json", id, i))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		proofPaths = append(proofPaths, path)
	}
	return certPath, proofPaths
}

// TestCertificateVerifyBatchCommand checks a batch certificate and three of
// its subjects' proofs offline, and that a changed leaf, a proof of
// another batch, another key and a proof without a batch certificate each
// fail in one line with exit status 1.
func TestCertificateVerifyBatchCommand(t *testing.T) {
	dir := t.TempDir()
	const id = "9b7c0000-0000-4000-8000-000000000014"
	cert, proofs := writeBatch(t, dir, id, 10, 1, 0, 2, 9)
	_, otherProofs := writeBatch(t, dir, "9b7c0000-0000-4000-8000-000000000015", 10, 1, 2)
	signer, _ := certificate.NewSigner(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	other, _ := certificate.NewSigner(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	key := hex.EncodeToString(signer.Public())

	args := []string{"certificate", "verify", "--public-key", key, cert}
	for _, p := range proofs {
		args = append(args, "--proof", p)
	}
	out, err := runCommand(t, nil, args...)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, want := range []string{
		"certificate " + cert + " is valid: signed by key " + signer.KeyID(),
		id + ", status failed", "subjects:     10 (completed 9, failed 1)",
		"orders               erased 9, failed 1", "merkle tree:  10 leaves (lethe.batch-leaf.v1)",
		"proof " + proofs[0] + " is valid: leaf 0 of 10 is in batch " + id,
		"proof " + proofs[1] + " is valid: leaf 2 of 10", "status failed, 1 identifiers",
		fmt.Sprintf("%064x", 1002), "proof " + proofs[2] + " is valid: leaf 9 of 10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The certificate alone verifies too.
	if _, err := runCommand(t, nil, "certificate", "verify", "--public-key", key, cert); err != nil {
		t.Errorf("verify without proofs: %v", err)
	}

	proof, _ := os.ReadFile(proofs[1])
	tampered := filepath.Join(dir, "tampered.json")
	os.WriteFile(tampered, bytes.Replace(proof, []byte(`"outcome": "failed"`), []byte(`"outcome": "erased"`), 1), 0o600)
	garbled := filepath.Join(dir, "garbled.json")
	os.WriteFile(garbled, []byte("{"), 0o600)
	reqCert, _, _ := writeCertificate(t, 1)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tampered leaf", []string{"--public-key", key, cert, "--proof", proofs[0], "--proof", tampered},
			"proof " + tampered + " does not verify: the subject's leaf is not in the batch"},
		{"another batch's proof", []string{"--public-key", key, cert, "--proof", otherProofs[0]},
			"does not verify: the proof is for another batch"},
		{"wrong key", []string{"--public-key", hex.EncodeToString(other.Public()), cert, "--proof", proofs[0]},
			"certificate " + cert + " does not verify: the certificate is signed by a key not among those given"},
		{"proof with a request's certificate", []string{"--public-key", key, reqCert, "--proof", proofs[0]},
			"--proof goes with a batch certificate"},
		{"proof not a document", []string{"--public-key", key, cert, "--proof", garbled}, "proof is not a valid document"},
		{"missing proof", []string{"--public-key", key, cert, "--proof", garbled + ".missing"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, nil, append([]string{"certificate", "verify"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if code := report(err, io.Discard); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
		})
	}
}
