package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
)

const holdsUsage = `Usage: lethe holds <list|get|put|lift> [flags]

  list [--all]
           the holds in force; --all also those lifted or expired
  get ID   one hold
  put ID --subject TYPE=VALUE [--subject TYPE=VALUE]... --basis TEXT
         [--system NAME] [--until TIME|DURATION]
           keep a subject's data (in one system, or all) despite erasure
           requests, on a legal basis; ID is yours, such as a case number
  lift ID  end a hold; the requests it held then erase

Every command takes --api-url ($LETHE_API_URL, default http://127.0.0.1:8080),
--token ($LETHE_TOKEN) and --json. Exit status as for lethe erasures: 0 ok,
1 bad command line, 2 refused (4xx), 3 unavailable.
`

// runHolds runs `lethe holds`: legal holds through the API.
func runHolds(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, holdsUsage)
		return errors.New("holds: name a subcommand: list, get, put or lift")
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		return runHoldList(ctx, rest, env, stdout, stderr)
	case "get":
		return runHoldGet(ctx, rest, env, stdout, stderr)
	case "put":
		return runHoldPut(ctx, rest, env, stdout, stderr)
	case "lift":
		return runHoldLift(ctx, rest, env, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, holdsUsage)
		return nil
	}
	fmt.Fprint(stderr, holdsUsage)
	return fmt.Errorf("holds: unknown subcommand %q", args[0])
}

func runHoldList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("holds list", env, stderr, true)
	var all bool
	fs.BoolVar(&all, "all", false, "also list holds lifted or expired")
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	path := "/v1/holds"
	if all {
		path += "?all=true"
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, path, nil, func(b []byte) error {
		var page struct {
			Items []lethe.Hold `json:"items"`
		}
		if err := decodeAnswer(b, &page); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "ID\tSUBJECT TYPES\tSYSTEM\tBASIS\tEXPIRES\tACTIVE\tPLACED BY\tLIFTED")
		for _, h := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, strings.Join(h.SubjectTypes, ","), heldSystem(h),
				orEmpty(h.Basis), orNever(h.ExpiresAt), yesNo(h.Active), orEmpty(h.PlacedBy), timeOrDash(h.LiftedAt))
		}
		return tw.Flush()
	})
}

func runHoldGet(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("holds get", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the hold's id")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, "/v1/holds/"+escape(pos[0]), nil, holdPrinter(stdout))
}

func runHoldPut(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("holds put", env, stderr, true)
	var subjects subjectFlag
	var basis, system, until string
	fs.Var(&subjects, "subject", "an identifier of the subject held, as type=value (repeatable)")
	fs.StringVar(&basis, "basis", "", `the legal ground, such as "Art. 17(3)(e): pending litigation"`)
	fs.StringVar(&system, "system", "", "the one system held (default: every system)")
	fs.StringVar(&until, "until", "", "when the hold ends on its own: an RFC 3339 time, or a duration from now such as 2160h (default: until lifted)")
	pos, err := parseArgs(fs, args, 1, "the hold's id")
	if err != nil {
		return err
	}
	subject, err := subjects.subject()
	if err != nil {
		return fmt.Errorf("holds put: %w", err)
	}
	if strings.TrimSpace(basis) == "" {
		return errors.New("holds put: --basis is required")
	}
	body := map[string]any{"subject": subject, "basis": basis, "system": system}
	if until != "" {
		t, err := parseUntil(until, time.Now())
		if err != nil {
			return fmt.Errorf("holds put: --until: %w", err)
		}
		body["expires_at"] = t
	}
	return clientCall(ctx, cf, stdout, http.MethodPut, "/v1/holds/"+escape(pos[0]), body, holdPrinter(stdout))
}

// parseUntil reads an RFC 3339 time, or a duration counted from now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, errors.New("give an RFC 3339 time, such as 2027-06-30T00:00:00Z, or a positive duration, such as 2160h")
	}
	return now.Add(d).UTC().Truncate(time.Second), nil
}

func runHoldLift(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("holds lift", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the hold's id")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodDelete, "/v1/holds/"+escape(pos[0]), nil, holdPrinter(stdout))
}

func heldSystem(h lethe.Hold) string {
	if h.System == "" {
		return "(all)"
	}
	return h.System
}

func holdPrinter(w io.Writer) func([]byte) error {
	return func(b []byte) error {
		var h lethe.Hold
		if err := decodeAnswer(b, &h); err != nil {
			return err
		}
		return fields(w,
			[2]string{"ID", h.ID},
			[2]string{"SUBJECT TYPES", strings.Join(h.SubjectTypes, ",")},
			[2]string{"SYSTEM", heldSystem(h)},
			[2]string{"BASIS", h.Basis},
			[2]string{"EXPIRES", orNever(h.ExpiresAt)},
			[2]string{"ACTIVE", yesNo(h.Active)},
			[2]string{"PLACED BY", h.PlacedBy},
			[2]string{"CREATED", timeOrDash(&h.CreatedAt)},
			[2]string{"UPDATED", timeOrDash(&h.UpdatedAt)},
			[2]string{"LIFTED", timeOrDash(h.LiftedAt)},
			[2]string{"LIFTED BY", h.LiftedBy})
	}
}
