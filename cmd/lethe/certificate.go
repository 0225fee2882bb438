package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lethe-dev/lethe/certificate"
)

const certificateUsage = `Usage: lethe certificate verify (--public-key KEY | --keys-url URL) [--proof PROOF]... FILE

  verify   check a certificate of erasure, of a request or of a batch,
           offline: its signature, and that the file is byte for byte the
           canonical one Lethe issued; with --proof, also that a subject's
           inclusion proof leads to the batch certificate's Merkle root

  --public-key KEY   the issuer's Ed25519 public key (hex or base64; several
                     comma-separated), e.g. from GET /v1/keys
  --keys-url URL     fetch the keys from a Lethe API's /v1/keys instead
  --proof PROOF      an inclusion proof file of one subject of the batch
                     (repeat for several)

Exits 0 and prints what the certificate (and each proof) states when all
verify, 1 with the reason otherwise. See docs/operating.md.
`

// keysFetchTimeout bounds fetching --keys-url.
const keysFetchTimeout = 30 * time.Second

// runCertificate runs `lethe certificate verify`.
func runCertificate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, certificateUsage)
		if len(args) == 0 {
			return errors.New("certificate: name a subcommand: verify")
		}
		return fmt.Errorf("certificate: unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("lethe certificate verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	publicKey := fs.String("public-key", "", "the issuer's Ed25519 public key(s), hex or base64, comma-separated")
	keysURL := fs.String("keys-url", "", "URL of a Lethe API's /v1/keys to fetch the public keys from")
	var proofs []string
	fs.Func("proof", "an inclusion proof file of one subject of a batch certificate (repeatable)", func(p string) error {
		proofs = append(proofs, p)
		return nil
	})
	// Flags may come before or after the file.
	var files []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprint(stderr, certificateUsage)
		return errors.New("certificate verify: give exactly one FILE")
	}
	if *publicKey == "" && *keysURL == "" {
		return errors.New("certificate verify: give --public-key KEY or --keys-url URL")
	}
	var keys []ed25519.PublicKey
	if *publicKey != "" {
		ks, err := certificate.ParsePublicKeys(*publicKey)
		if err != nil {
			return fmt.Errorf("certificate verify: --public-key: %w", err)
		}
		keys = append(keys, ks...)
	}
	if *keysURL != "" {
		ks, err := fetchKeys(ctx, *keysURL)
		if err != nil {
			return fmt.Errorf("certificate verify: --keys-url: %w", err)
		}
		keys = append(keys, ks...)
	}
	file, err := readLimited(files[0], certificate.MaxSize)
	if err != nil {
		return fmt.Errorf("certificate verify: %w", err)
	}
	if certificate.FormatOf(file) == certificate.BatchFormat {
		return verifyBatch(stdout, files[0], file, keys, proofs)
	}
	c, key, err := certificate.Verify(file, keys)
	if err != nil {
		return fmt.Errorf("certificate %s does not verify: %w", files[0], err)
	}
	printCertificate(stdout, files[0], c, key)
	if len(proofs) > 0 {
		return fmt.Errorf("certificate verify: --proof goes with a batch certificate, and %s is a request's (%s)", files[0], c.Format)
	}
	return nil
}

// verifyBatch checks a batch certificate, then each proof against it, and
// stops at the first that fails.
func verifyBatch(stdout io.Writer, path string, file []byte, keys []ed25519.PublicKey, proofs []string) error {
	c, key, err := certificate.VerifyBatch(file, keys)
	if err != nil {
		return fmt.Errorf("certificate %s does not verify: %w", path, err)
	}
	printBatchCertificate(stdout, path, c, key)
	for _, pp := range proofs {
		b, err := readLimited(pp, certificate.MaxSize)
		if err != nil {
			return fmt.Errorf("certificate verify: %w", err)
		}
		p, err := certificate.ParseProof(b)
		if err == nil {
			err = certificate.VerifyProof(c, p)
		}
		if err != nil {
			return fmt.Errorf("proof %s does not verify: %w", pp, err)
		}
		printProof(stdout, pp, p)
	}
	return nil
}

// readLimited reads a file of at most limit bytes (one more is read, so
// that Verify can tell an oversized file).
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// fetchKeys reads a GET /v1/keys document.
func fetchKeys(ctx context.Context, url string) ([]ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, keysFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return certificate.ParseKeySet(body)
}

// printCertificate says what a verified certificate states.
func printCertificate(w io.Writer, path string, c *certificate.Certificate, key ed25519.PublicKey) {
	fmt.Fprintf(w, "certificate %s is valid: signed by key %s (%s), canonical form\n", path, certificate.KeyID(key), c.Signature.Algorithm)
	dry := ""
	if c.DryRun {
		dry = " (DRY RUN: nothing was erased)"
	}
	fmt.Fprintf(w, "  request:    %s, status %s%s, reason %q\n", c.RequestID, c.Status, dry, c.Reason)
	if c.CreatedBy != nil {
		fmt.Fprintf(w, "  created by: %q\n", *c.CreatedBy)
	}
	met := "met"
	if c.CompletedAt.After(c.Deadline) {
		met = "missed"
	}
	fmt.Fprintf(w, "  times:      created %s, completed %s, deadline %s (%s)\n",
		c.CreatedAt.Format(time.RFC3339), c.CompletedAt.Format(time.RFC3339), c.Deadline.Format(time.RFC3339), met)
	types := make([]string, len(c.Subject))
	for i, d := range c.Subject {
		types[i] = d.Type
	}
	fmt.Fprintf(w, "  subject:    %d identifiers as keyed digests (%s)\n", len(c.Subject), strings.Join(types, ", "))
	fmt.Fprintf(w, "  systems:    %d\n", len(c.Systems))
	for _, s := range c.Systems {
		fmt.Fprintf(w, "    %-20s %-10s records %d, attempts %d\n", s.Name, s.Outcome, s.Records, s.Attempts)
	}
	fmt.Fprintf(w, "  audit:      request's last event seq %d hash %s\n", c.Audit.RequestLast.Seq, c.Audit.RequestLast.Hash)
	fmt.Fprintf(w, "              chain head seq %d hash %s\n", c.Audit.ChainHead.Seq, c.Audit.ChainHead.Hash)
	fmt.Fprintf(w, "  issued:     %s\n", c.IssuedAt.Format(time.RFC3339Nano))
}

// printBatchCertificate says what a verified batch certificate states.
func printBatchCertificate(w io.Writer, path string, c *certificate.BatchCertificate, key ed25519.PublicKey) {
	fmt.Fprintf(w, "certificate %s is valid: signed by key %s (%s), canonical form\n", path, certificate.KeyID(key), c.Signature.Algorithm)
	dry := ""
	if c.DryRun {
		dry = " (DRY RUN: nothing was erased)"
	}
	fmt.Fprintf(w, "  batch:        %s, status %s%s, reason %q\n", c.BatchID, c.Status, dry, c.Reason)
	fmt.Fprintf(w, "  requested by: %q, created by %q\n", c.RequestedBy, c.CreatedBy)
	fmt.Fprintf(w, "  times:        created %s, finished %s\n", c.CreatedAt.Format(time.RFC3339), c.FinishedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "  subjects:     %d (%s)\n", c.Subjects.Total, counts(c.Subjects.ByStatus))
	fmt.Fprintf(w, "  systems:      %d\n", len(c.Systems))
	for _, s := range c.Systems {
		fmt.Fprintf(w, "    %-20s %s\n", s.Name, counts(s.ByOutcome))
	}
	fmt.Fprintf(w, "  merkle tree:  %d leaves (%s), root %s\n", c.Tree.Size, c.Tree.LeafFormat, c.Tree.Root)
	fmt.Fprintf(w, "  audit:        batch's last event seq %d hash %s\n", c.Audit.BatchLast.Seq, c.Audit.BatchLast.Hash)
	fmt.Fprintf(w, "                chain head seq %d hash %s\n", c.Audit.ChainHead.Seq, c.Audit.ChainHead.Hash)
	fmt.Fprintf(w, "  issued:       %s\n", c.IssuedAt.Format(time.RFC3339Nano))
}

// counts writes a map of counts as "erased 3, failed 1", keys sorted.
func counts(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// printProof says what a verified inclusion proof shows.
func printProof(w io.Writer, path string, p *certificate.Proof) {
	fmt.Fprintf(w, "proof %s is valid: leaf %d of %d is in batch %s\n", path, p.LeafIndex, p.TreeSize, p.BatchID)
	fmt.Fprintf(w, "  subject:    status %s, %d identifiers as keyed digests\n", p.Leaf.Status, len(p.Leaf.Subject))
	for _, d := range p.Leaf.Subject {
		fmt.Fprintf(w, "    %-20s %s\n", d.Type, d.Digest)
	}
	fmt.Fprintf(w, "  systems:    %d\n", len(p.Leaf.Systems))
	for _, s := range p.Leaf.Systems {
		fmt.Fprintf(w, "    %-20s %-10s records %d\n", s.Name, s.Outcome, s.Records)
	}
}
