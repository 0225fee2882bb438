package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

const tokenUsage = `Usage: lethe token <create|revoke|list> [flags]

  create --name NAME --scopes a,b [--ttl 720h]
           create a Lethe API token; the token is printed once, alone on
           the last line of stdout, and only its hash is kept
  revoke --name NAME
           revoke the token named NAME on every API replica at once
  list [--json]
           list tokens: name, scopes, created, expires, last used, revoked
           (never a token or its hash)

The database comes from $LETHE_DATABASE_URL. See docs/security.md.
`

// runToken runs `lethe token`: the operator's way to give services and
// scripts credentials for the API, and to take them back.
func runToken(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return errors.New("token: name a subcommand: create, revoke or list")
	}
	switch args[0] {
	case "create":
		return runTokenCreate(ctx, args[1:], env, stdout, stderr)
	case "revoke":
		return runTokenRevoke(ctx, args[1:], env, stdout, stderr)
	case "list":
		return runTokenList(ctx, args[1:], env, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, tokenUsage)
		return nil
	}
	fmt.Fprint(stderr, tokenUsage)
	return fmt.Errorf("token: unknown subcommand %q", args[0])
}

func runTokenCreate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var name, scopeList string
	var ttl time.Duration
	cfg, err := parseConfig("token create", args, env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.StringVar(&name, "name", "", "the token's name; the API records its caller as token:NAME")
		fs.StringVar(&scopeList, "scopes", "", "comma-separated scopes, such as erasures:write,systems:read")
		fs.DurationVar(&ttl, "ttl", 0, "how long the token is valid, such as 720h; 0 never expires")
	})
	if err != nil {
		return err
	}
	if name == "" {
		return errors.New("token create: --name is required")
	}
	scopes, err := auth.ParseScopes(scopeList)
	if err != nil {
		return fmt.Errorf("token create: --scopes: %w", err)
	}
	if ttl < 0 {
		return errors.New("token create: --ttl cannot be negative")
	}
	tok, err := auth.NewToken()
	if err != nil {
		return err
	}
	store, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	rec, err := store.CreateToken(ctx, registry.NewToken{Name: name, Hash: auth.HashToken(tok), Scopes: scopes, TTL: ttl, Actor: cliActor(env)})
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	fmt.Fprintf(stderr, "token %s created with scopes %s, expires %s.\n", rec.Name, joinScopes(rec.Scopes), orNever(rec.ExpiresAt))
	fmt.Fprintln(stderr, "It is printed once, on standard output; Lethe keeps only its hash, so store it in a secret manager now.")
	fmt.Fprintln(stdout, tok)
	return nil
}

func runTokenRevoke(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var name string
	cfg, err := parseConfig("token revoke", args, env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.StringVar(&name, "name", "", "the token to revoke")
	})
	if err != nil {
		return err
	}
	if name == "" {
		return errors.New("token revoke: --name is required")
	}
	store, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	rec, err := store.RevokeToken(ctx, name, cliActor(env))
	if err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	fmt.Fprintf(stdout, "token %s revoked at %s\n", rec.Name, rec.RevokedAt.Format(time.RFC3339))
	return nil
}

// tokenView is one token as `lethe token list --json` prints it.
type tokenView struct {
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func runTokenList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var asJSON bool
	cfg, err := parseConfig("token list", args, env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.BoolVar(&asJSON, "json", false, "print the tokens as a JSON array")
	})
	if err != nil {
		return err
	}
	store, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	recs, err := store.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	if asJSON {
		views := make([]tokenView, len(recs))
		for i, r := range recs {
			views[i] = tokenView{Name: r.Name, Scopes: scopeStrings(r.Scopes), CreatedAt: r.CreatedAt,
				ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
	for _, r := range recs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, joinScopes(r.Scopes), r.CreatedAt.Format(time.RFC3339),
			orNever(r.ExpiresAt), orDash(r.LastUsedAt), orDash(r.RevokedAt))
	}
	return w.Flush()
}

func scopeStrings(scopes []auth.Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	return out
}

func joinScopes(scopes []auth.Scope) string { return strings.Join(scopeStrings(scopes), ",") }

func orNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func orDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// cliActor names whoever runs a `lethe token` command in the audit: the
// operating-system user, as the command has no API credential of its own
// (it acts with the database's).
func cliActor(env func(string) string) string {
	if u := env("USER"); u != "" {
		return "cli:" + u
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}
