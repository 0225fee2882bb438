package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lethe-dev/lethe/certificate"
)

const certificateUsage = `Usage: lethe certificate verify (--public-key KEY | --keys-url URL) FILE

  verify   check a certificate of erasure offline: its signature, and that
           the file is byte for byte the canonical one Lethe issued

  --public-key KEY   the issuer's Ed25519 public key (hex or base64; several
                     comma-separated), e.g. from GET /v1/keys
  --keys-url URL     fetch the keys from a Lethe API's /v1/keys instead

Exits 0 and prints what the certificate states when it verifies, 1 with the
reason otherwise. See docs/operating.md.
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
	c, key, err := certificate.Verify(file, keys)
	if err != nil {
		return fmt.Errorf("certificate %s does not verify: %w", files[0], err)
	}
	printCertificate(stdout, files[0], c, key)
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
