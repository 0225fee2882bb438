package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectorCommandErrors: `lethe connector` names what is missing in
// one line, and a broken file stops it before it touches Kafka.
func TestConnectorCommandErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("system: Not A Name\nunknown_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"connector"}, "name a kind"},
		{[]string{"connector", "mysql"}, `unknown kind "mysql"`},
		{[]string{"connector", "postgres"}, "--config FILE is required"},
		{[]string{"connector", "webhook", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml"},
		{[]string{"connector", "webhook", "--config", bad}, "unknown_key"},
		{[]string{"connector", "postgres", "--config", bad}, "unknown_key"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			err := run(ctx, tc.args, func(string) string { return "" }, &stderr, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q, want one line containing %q", err, tc.want)
			}
		})
	}
}
