package connectors_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDependenciesStayLight keeps the SDK importable by any service: besides
// the standard library it may pull in kafka-go (with its compression
// libraries and the SCRAM implementation behind its sasl/scram package),
// uuid, Lethe's wire format and its digest package (the suppression list's
// keyed digests; standard library only), never the Temporal SDK, a database
// driver, the registry or the API.
func TestDependenciesStayLight(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// Modules, any of whose packages may be used.
	allowedModules := []string{
		"github.com/segmentio/kafka-go",
		"github.com/klauspost/compress",
		"github.com/pierrec/lz4",
		"github.com/google/uuid",
		// kafka-go's sasl/scram: SCRAM itself, PBKDF2 and SASLprep's
		// Unicode normalisation.
		"github.com/xdg-go/scram",
		"github.com/xdg-go/pbkdf2",
		"github.com/xdg-go/stringprep",
		"golang.org/x/text",
	}
	// Packages of Lethe itself, exactly.
	allowedPackages := map[string]bool{
		"github.com/lethe-dev/lethe/wire":   true,
		"github.com/lethe-dev/lethe/digest": true,
		// The Kafka clients and their security, shared with Lethe's own
		// processes; standard library and kafka-go only.
		"github.com/lethe-dev/lethe/internal/kafkasec": true,
		"github.com/lethe-dev/lethe/connectors":        true,
	}
	var deps int
	for _, pkg := range strings.Fields(string(out)) {
		deps++
		ok := allowedPackages[pkg]
		for _, prefix := range allowedModules {
			if pkg == prefix || strings.HasPrefix(pkg, prefix+"/") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("connectors depends on %s, which is not allowed", pkg)
		}
	}
	if deps == 0 {
		t.Fatalf("go list reported no dependencies at all; the check would prove nothing")
	}
}
