package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/testenv"
)

// TestDevUIShowsDecryptedPayloads opens a workflow of `lethe dev --demo` in
// headless Chromium, as a person opens the printed UI link: the UI signs
// the browser in by itself, its codec calls carry the dev token, and the
// page shows the request's input decrypted, though Temporal stores it
// encrypted (TestDevCodec). Chromium comes from `make test-setup`.
func TestDevUIShowsDecryptedPayloads(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run `make test-setup` (apt-get install chromium)")
	}
	env := devEnv(t, testenv.PostgresURL(t))
	banner := startDev(t, env, "--demo", "--ephemeral", "--data-dir", t.TempDir())
	uiURL := submatch(t, uiLine, banner, 1)
	m := curlBody.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}
	r := httpDo(t, http.MethodPost, m[1], m[2], bannerAuth(t, banner)...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures answered %d %s", r.status, r.body)
	}
	var accepted struct {
		WorkflowID string `json:"workflow_id"`
	}
	json.Unmarshal(r.body, &accepted)
	var subject struct {
		Subject map[string]string `json:"subject"`
	}
	json.Unmarshal([]byte(m[2]), &subject)

	page := uiURL + "/namespaces/default/workflows/" + accepted.WorkflowID
	// The flags keep Chromium off the network beyond localhost: on a closed
	// network its background fetches fail and can stall the page's virtual
	// time. A run that still hangs (a loaded machine) is killed and tried
	// again within the test's budget.
	var dom string
	for start := time.Now(); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		var stderr strings.Builder
		cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
			"--disable-quic", "--no-first-run", "--disable-background-networking",
			"--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=20000", "--dump-dom", page)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil && time.Since(start) > 4*time.Minute {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		if err != nil {
			t.Logf("chromium: %v; trying again", err)
			continue
		}
		dom = string(out)
		if strings.Contains(dom, subject.Subject["email"]) || time.Since(start) > 2*time.Minute {
			break
		}
	}
	for kind, v := range subject.Subject {
		if !strings.Contains(dom, v) {
			t.Errorf("the workflow page does not show the decrypted %s", kind)
		}
	}
	if !strings.Contains(dom, accepted.WorkflowID) {
		t.Errorf("the page is not the workflow's page (no %s in it)", accepted.WorkflowID)
	}
}
