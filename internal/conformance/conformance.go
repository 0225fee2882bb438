// Package conformance is `lethe conformance` once its flags are read: run
// connectortest.CheckWire against a running connector, seeding subjects
// with a shell command, and print one line per check (or JSON). It is apart
// from package main so that the end-to-end tests run the command's own code
// in process.
package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/lethe-dev/lethe/connectors/connectortest"
)

// Environment variables of the seed command, naming the subject to store.
const (
	EnvSeedType  = "LETHE_SEED_TYPE"
	EnvSeedValue = "LETHE_SEED_VALUE"
)

// Command is one run of `lethe conformance`.
type Command struct {
	// Wire is what to check; its Seed is set from SeedCommand.
	Wire connectortest.WireConfig
	// Pull, when set, checks a pull-mode connector through
	// connectortest.CheckPull instead: its System, IdentifierType, KeyID,
	// Secret and Timeout are Wire's, and its Seed is set from SeedCommand.
	Pull *connectortest.PullConfig
	// SeedCommand, when not empty, is run through sh -c to seed each
	// subject (see Seed).
	SeedCommand string
	// JSON prints a Report instead of lines.
	JSON bool
}

// Report is the JSON output.
type Report struct {
	System string  `json:"system"`
	Passed bool    `json:"passed"`
	Checks []Check `json:"checks"`
}

// Check is one check in a Report.
type Check struct {
	Check   string `json:"check"`
	Passed  bool   `json:"passed"`
	Problem string `json:"problem,omitempty"`
}

// Run checks the connector (over Kafka, or with Pull as its pull-mode
// API) and prints the results to stdout: "PASS name"
// or "FAIL name: problem" per check and a summary, or a Report with JSON.
// It returns an error, for a non-zero exit, when any check failed.
func (c Command) Run(ctx context.Context, stdout io.Writer) error {
	wc := c.Wire
	if c.SeedCommand != "" {
		wc.Seed = Seed(c.SeedCommand)
	}
	var results []connectortest.Result
	if c.Pull != nil {
		pc := *c.Pull
		pc.System, pc.IdentifierType, pc.Seed = wc.System, wc.IdentifierType, wc.Seed
		pc.KeyID, pc.Secret, pc.Timeout = wc.KeyID, wc.Secret, wc.Timeout
		results = connectortest.CheckPull(ctx, pc)
	} else {
		results = connectortest.CheckWire(ctx, wc)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	failed := 0
	for _, r := range results {
		if !r.Passed() {
			failed++
		}
	}
	if c.JSON {
		rep := Report{System: wc.System, Passed: failed == 0, Checks: []Check{}}
		for _, r := range results {
			rep.Checks = append(rep.Checks, Check{Check: r.Check, Passed: r.Passed(), Problem: r.Problem})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.Passed() {
				fmt.Fprintf(stdout, "PASS %s\n", r.Check)
			} else {
				fmt.Fprintf(stdout, "FAIL %s: %s\n", r.Check, r.Problem)
			}
		}
		fmt.Fprintf(stdout, "%d of %d checks passed\n", len(results)-failed, len(results))
	}
	if failed > 0 {
		return fmt.Errorf("conformance: %d of %d checks failed for system %s", failed, len(results), wc.System)
	}
	return nil
}

// seedOutputTail bounds how much of a failed seed command's output the
// failure quotes.
const seedOutputTail = 500

// Seed runs cmd through sh -c for each subject, with its first identifier
// in LETHE_SEED_TYPE and LETHE_SEED_VALUE (the conformance subjects have
// one, a random test value, never a person's); cmd exits 0 once the
// service holds data for it.
func Seed(cmd string) func(ctx context.Context, s connectortest.Subject) error {
	return func(ctx context.Context, s connectortest.Subject) error {
		id := s.Identifiers[0]
		c := exec.CommandContext(ctx, "sh", "-c", cmd)
		c.Env = append(os.Environ(), EnvSeedType+"="+id.Type, EnvSeedValue+"="+id.Value)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			text := strings.TrimSpace(out.String())
			if len(text) > seedOutputTail {
				text = "…" + text[len(text)-seedOutputTail:]
			}
			return fmt.Errorf("the seed command failed (%w): %s", err, text)
		}
		return nil
	}
}
