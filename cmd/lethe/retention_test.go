package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/internal/testenv"
)

// TestDevCertificateAndRetention runs `lethe dev --demo` with a short
// LETHE_RETENTION: the demo erasure's certificate verifies with `lethe
// certificate verify` against the keys the API serves (made from the
// signing key dev keeps in its data folder), the pruner prunes the request
// while GET still answers it, the same certificate is served afterwards,
// and `lethe audit verify` finds the chain intact and the certificate's
// audit links in it.
func TestDevCertificateAndRetention(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	env := devEnv(t, dbURL)
	env["LETHE_RETENTION"] = "2s"
	dataDir := t.TempDir()
	banner := startDev(t, env, "--demo", "--ephemeral", "--data-dir", dataDir)
	apiURL := submatch(t, apiLine, banner, 1)
	m := curlBody.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}

	seed, err := os.ReadFile(filepath.Join(dataDir, "signing.key"))
	if err != nil {
		t.Fatalf("signing key not kept in the data folder: %v", err)
	}
	signer, err := certificate.ParseSigningKey(string(seed))
	if err != nil {
		t.Fatalf("kept signing key: %v", err)
	}
	var keys certificate.KeySet
	json.Unmarshal(httpDo(t, http.MethodGet, apiURL+"/v1/keys", "").body, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].KeyID != signer.KeyID() || !keys.Keys[0].Active {
		t.Fatalf("GET /v1/keys = %+v, want the kept key %s, active", keys, signer.KeyID())
	}

	authz := bannerAuth(t, banner)
	r := httpDo(t, http.MethodPost, m[1], m[2], authz...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures answered %d %s", r.status, r.body)
	}
	var accepted struct {
		ID string `json:"id"`
	}
	json.Unmarshal(r.body, &accepted)
	certURL := apiURL + "/v1/erasures/" + accepted.ID + "/certificate"

	// Issued once the request finished, possibly by the pruner first.
	var cert httpResult
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		cert = httpDo(t, http.MethodGet, certURL, "", authz...)
		if cert.status == http.StatusOK {
			break
		}
		if cert.status != http.StatusConflict || time.Since(start) > time.Minute {
			t.Fatalf("certificate answered %d %s", cert.status, cert.body)
		}
	}
	path := filepath.Join(t.TempDir(), "certificate.json")
	if err := os.WriteFile(path, cert.body, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCommand(t, nil, "certificate", "verify", "--keys-url", apiURL+"/v1/keys", path)
	if err != nil || !strings.Contains(out, accepted.ID+", status completed") {
		t.Fatalf("lethe certificate verify = %v\n%s", err, out)
	}

	var pruned struct {
		Status   string            `json:"status"`
		PrunedAt *time.Time        `json:"pruned_at"`
		Systems  []json.RawMessage `json:"systems"`
	}
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		r := httpDo(t, http.MethodGet, apiURL+"/v1/erasures/"+accepted.ID, "", authz...)
		json.Unmarshal(r.body, &pruned)
		if pruned.PrunedAt != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("request not pruned 30 s after it finished with a retention of 2 s: %s", r.body)
		}
	}
	if pruned.Status != "completed" || len(pruned.Systems) != 0 {
		t.Errorf("pruned request = %+v, want completed with no systems", pruned)
	}
	if again := httpDo(t, http.MethodGet, certURL, "", authz...); again.status != http.StatusOK || !bytes.Equal(again.body, cert.body) {
		t.Errorf("certificate after pruning = %d, want the same file", again.status)
	}
	out, err = runCommand(t, map[string]string{"LETHE_DATABASE_URL": dbURL}, "audit", "verify", "--certificate", path)
	if err != nil || !strings.Contains(out, "audit chain intact") || !strings.Contains(out, "its audit links are in the chain") {
		t.Errorf("lethe audit verify after pruning = %v\n%s", err, out)
	}
}
