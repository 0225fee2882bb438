package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
