package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lethe-dev/lethe/internal/apiclient"
)

// The exit statuses of every lethe command. A script tells from them
// whether to fix its call (1, 2), try again later (3) or look at the
// request (4); the README's "The command line" section lists them.
const (
	exitOK = 0
	// exitUsage: a bad command line, or any failure on this machine.
	exitUsage = 1
	// exitRefused: the API answered 4xx (unauthenticated, forbidden,
	// unknown id, invalid input, conflict).
	exitRefused = 2
	// exitUnavailable: no answer from the API, or a 5xx answer.
	exitUnavailable = 3
	// exitRequestFailed: --wait saw the request or the batch end failed
	// or canceled.
	exitRequestFailed = 4
)

// exitCode maps the error that stopped a command to its exit status.
func exitCode(err error) int {
	var apiErr *apiclient.Error
	var unreachable *apiclient.UnreachableError
	var ended *requestEndedError
	var batchEnded *batchEndedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ended), errors.As(err, &batchEnded):
		return exitRequestFailed
	case errors.As(err, &unreachable):
		return exitUnavailable
	case errors.As(err, &apiErr):
		if apiErr.Unavailable() {
			return exitUnavailable
		}
		return exitRefused
	}
	return exitUsage
}

// report prints the error that stopped a command on one line of stderr and
// returns the exit status: what main does, kept apart so that tests see it.
func report(err error, stderr io.Writer) int {
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "lethe:", err)
	}
	return exitCode(err)
}

// clientFlags are the flags every API command shares.
type clientFlags struct {
	apiURL, token string
	json          bool
}

// newClientFlagSet returns the flag set of an API command with --api-url,
// --token and, when the command prints an API answer, --json.
func newClientFlagSet(name string, env func(string) string, stderr io.Writer, withJSON bool) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet("lethe "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	base := env("LETHE_API_URL")
	if base == "" {
		base = apiclient.DefaultURL
	}
	fs.StringVar(&cf.apiURL, "api-url", base, "the Lethe API to call ($LETHE_API_URL)")
	fs.StringVar(&cf.token, "token", env("LETHE_TOKEN"), "bearer credential: a Lethe token, an OIDC access token or lethe dev's dev token ($LETHE_TOKEN)")
	if withJSON {
		fs.BoolVar(&cf.json, "json", false, "print the API's JSON answer instead of a table")
	}
	return fs, cf
}

func (cf *clientFlags) client() (*apiclient.Client, error) {
	return apiclient.New(cf.apiURL, cf.token)
}

// parseArgs parses flags wherever they stand among the positional
// arguments (`lethe erasures get ID --json` as well as `get --json ID`)
// and checks that exactly want positional arguments were given.
func parseArgs(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != want {
		if want == 0 {
			return nil, fmt.Errorf("%s: unexpected argument %q", strings.TrimPrefix(fs.Name(), "lethe "), pos[0])
		}
		return nil, fmt.Errorf("%s: give %s", strings.TrimPrefix(fs.Name(), "lethe "), names)
	}
	return pos, nil
}

// printJSON writes an API answer to w as received, indented for reading.
func printJSON(w io.Writer, body []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, body, "", "  "); err != nil {
		return fmt.Errorf("the API answered something other than JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// decodeAnswer reads an API answer into v.
func decodeAnswer(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the API's answer does not read as expected: %w", err)
	}
	return nil
}

// splitList reads a comma-separated list flag, such as --identifiers email,user_id.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// subjectFlag collects repeated --subject type=value flags. It checks
// them only once parsing is done (subject), because the flag package
// quotes a value its Set refuses, and a value may be an email address:
// no error of this command repeats what was typed.
type subjectFlag []string

func (s *subjectFlag) String() string { return "" }

func (s *subjectFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// subject returns the identifiers as the API's subject map.
func (s subjectFlag) subject() (map[string]string, error) {
	if len(s) == 0 {
		return nil, errors.New("give at least one --subject type=value")
	}
	out := make(map[string]string, len(s))
	for i, v := range s {
		t, value, ok := strings.Cut(v, "=")
		if !ok || t == "" || value == "" {
			return nil, fmt.Errorf("--subject number %d must be type=value, such as email=ada@example.com", i+1)
		}
		if _, dup := out[t]; dup {
			return nil, fmt.Errorf("--subject number %d gives a second value of the same type", i+1)
		}
		out[t] = value
	}
	return out, nil
}

// table writes aligned columns.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// fields prints NAME value lines, aligned, for one object.
func fields(w io.Writer, rows ...[2]string) error {
	tw := table(w)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], orEmpty(r[1]))
	}
	return tw.Flush()
}

func orEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// escape makes a name or id one segment of a path.
func escape(s string) string { return url.PathEscape(s) }

// clientCall runs a client command's call and prints its answer: as the
// API's JSON with --json, else through human (which may then be nil).
func clientCall(ctx context.Context, cf *clientFlags, stdout io.Writer, method, path string, body any, human func([]byte) error, header ...string) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	b, err := c.Do(ctx, method, path, body, header...)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, b)
	}
	return human(b)
}
