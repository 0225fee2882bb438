package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/registry"
)

const auditUsage = `Usage: lethe audit verify [--database-url URL] [--certificate FILE]...

  verify   walk the whole hash-chained audit in PostgreSQL, recompute every
           row's hash and report the first broken link; exits 1 if there is one

  --certificate FILE   also check that the audit links a certificate of
                       erasure recorded (its request's last event and the
                       chain head when it was issued) are still in the chain;
                       may be repeated

The database comes from $LETHE_DATABASE_URL. See docs/operating.md.
`

// runAudit runs `lethe audit verify`: it prints what it checked and
// returns an error naming the first broken link, so the exit status tells a
// script whether the audit is intact.
func runAudit(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		if len(args) == 0 {
			return errors.New("audit: name a subcommand: verify")
		}
		return fmt.Errorf("audit: unknown subcommand %q", args[0])
	}
	var certificates []string
	cfg, err := parseConfig("audit verify", args[1:], env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.Func("certificate", "a certificate of erasure whose audit links must be in the chain (repeatable)", func(v string) error {
			certificates = append(certificates, v)
			return nil
		})
	})
	if err != nil {
		return err
	}
	store, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	v, err := store.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if b := v.Broken; b != nil {
		fmt.Fprintf(stdout, "audit chain BROKEN: %d events intact before seq %d; head seq %d hash %s\n",
			v.Checked, b.Seq, v.Head.Seq, v.Head.Hash)
		where := fmt.Sprintf("seq %d", b.Seq)
		if b.ID != 0 {
			where += fmt.Sprintf(" (id %d)", b.ID)
		}
		return fmt.Errorf("audit chain broken at %s: %s: %s", where, b.Problem, b.Message)
	}
	fmt.Fprintf(stdout, "audit chain intact: %d events checked; head seq %d hash %s\n", v.Checked, v.Head.Seq, v.Head.Hash)
	for _, path := range certificates {
		if err := checkAnchors(ctx, store, path); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate %s: its audit links are in the chain\n", path)
	}
	return nil
}

// checkAnchors looks up the audit links a certificate recorded in the chain
// just verified: a certificate whose links are gone or changed shows that
// the chain was rewritten after it was issued. The certificate's signature
// is `lethe certificate verify`'s business; only its links are read here.
func checkAnchors(ctx context.Context, store *registry.Store, path string) error {
	b, err := readLimited(path, certificate.MaxSize)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", path, err)
	}
	var c certificate.Certificate
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("certificate %s: not a certificate: %w", path, err)
	}
	for _, l := range []struct {
		what string
		link certificate.Link
	}{
		{"its request's last event", c.Audit.RequestLast},
		{"the chain head at issue", c.Audit.ChainHead},
	} {
		got, found, err := store.AuditLinkAt(ctx, l.link.Seq)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", path, err)
		}
		if !found {
			return fmt.Errorf("certificate %s: %s, audit seq %d, is not in the chain", path, l.what, l.link.Seq)
		}
		if got.Hash != l.link.Hash {
			return fmt.Errorf("certificate %s: %s, audit seq %d, has hash %s in the chain, not the certificate's %s", path, l.what, l.link.Seq, got.Hash, l.link.Hash)
		}
	}
	return nil
}
