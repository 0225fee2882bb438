package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEverySettingIsDocumented: the README's configuration table is where
// the help text sends operators, so each environment variable a command
// reads has a row there.
func TestEverySettingIsDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range (&config{}).settings() {
		if !strings.Contains(string(readme), "| `"+s.env+"` |") {
			t.Errorf("README.md has no configuration row for %s", s.env)
		}
	}
}

// TestHelpNamesExistingDocs: every document the help text names exists.
func TestHelpNamesExistingDocs(t *testing.T) {
	for _, doc := range regexp.MustCompile(`docs/[A-Za-z0-9_.-]+\.md`).FindAllString(usage, -1) {
		if _, err := os.Stat(filepath.Join("..", "..", doc)); err != nil {
			t.Errorf("the help text names %s: %v", doc, err)
		}
	}
	if !strings.Contains(usage, "Configuration") {
		t.Error("the help text does not say where the settings are listed")
	}
}
