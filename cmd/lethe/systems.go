package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lethe-dev/lethe"
)

const systemsUsage = `Usage: lethe systems <list|get|put|retire> [flags]

  list     the active systems
  get NAME one system
  put NAME --identifiers TYPE,... [--produces TYPE,...] [--topic T]
           [--owner TEAM] [--description TEXT] [--confirm-within 72h]
           register a system, or replace it whole (flags left out take the
           API's defaults, not the old values)
  retire NAME
           later requests no longer target it; history keeps it

Every command takes --api-url ($LETHE_API_URL, default http://127.0.0.1:8080)
and --token ($LETHE_TOKEN); all but retire take --json. Exit status as for
lethe erasures: 0 ok, 1 bad command line, 2 refused (4xx), 3 unavailable.
`

// runSystems runs `lethe systems`: the registry of systems through the API.
func runSystems(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, systemsUsage)
		return errors.New("systems: name a subcommand: list, get, put or retire")
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		return runSystemList(ctx, rest, env, stdout, stderr)
	case "get":
		return runSystemGet(ctx, rest, env, stdout, stderr)
	case "put":
		return runSystemPut(ctx, rest, env, stdout, stderr)
	case "retire":
		return runSystemRetire(ctx, rest, env, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, systemsUsage)
		return nil
	}
	fmt.Fprint(stderr, systemsUsage)
	return fmt.Errorf("systems: unknown subcommand %q", args[0])
}

func runSystemList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("systems list", env, stderr, true)
	if _, err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, "/v1/systems", nil, func(b []byte) error {
		var page struct {
			Items []lethe.System `json:"items"`
		}
		if err := decodeAnswer(b, &page); err != nil {
			return err
		}
		tw := table(stdout)
		fmt.Fprintln(tw, "NAME\tIDENTIFIERS\tPRODUCES\tTOPIC\tOWNER\tCONFIRM WITHIN")
		for _, s := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, strings.Join(s.Identifiers, ","),
				orEmpty(strings.Join(s.Produces, ",")), s.Topic, orEmpty(s.Owner), s.ConfirmWithin)
		}
		return tw.Flush()
	})
}

func runSystemGet(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("systems get", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the system's name")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, "/v1/systems/"+escape(pos[0]), nil, systemPrinter(stdout))
}

func runSystemPut(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("systems put", env, stderr, true)
	var identifiers, produces, topic, owner, description, confirmWithin string
	fs.StringVar(&identifiers, "identifiers", "", "comma-separated identifier types the system erases by, such as email,user_id")
	fs.StringVar(&produces, "produces", "", "comma-separated identifier types the system can reveal for a subject")
	fs.StringVar(&topic, "topic", "", "the system's command topic (default: lethe.erasure.NAME)")
	fs.StringVar(&owner, "owner", "", "the team that runs the system")
	fs.StringVar(&description, "description", "", "what the system holds")
	fs.StringVar(&confirmWithin, "confirm-within", "", "how long to wait for a confirmation before dispatching again, such as 72h (default: the API's)")
	pos, err := parseArgs(fs, args, 1, "the system's name")
	if err != nil {
		return err
	}
	ids := splitList(identifiers)
	if len(ids) == 0 {
		return errors.New("systems put: --identifiers is required, such as --identifiers email,user_id")
	}
	body := map[string]any{"identifiers": ids, "topic": topic, "owner": owner, "description": description, "confirm_within": confirmWithin}
	if p := splitList(produces); len(p) > 0 {
		body["produces"] = p
	}
	return clientCall(ctx, cf, stdout, http.MethodPut, "/v1/systems/"+escape(pos[0]), body, systemPrinter(stdout))
}

func runSystemRetire(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("systems retire", env, stderr, false)
	pos, err := parseArgs(fs, args, 1, "the system's name")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if _, err := c.Do(ctx, http.MethodDelete, "/v1/systems/"+escape(pos[0]), nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "system %s retired\n", pos[0])
	return nil
}

func systemPrinter(w io.Writer) func([]byte) error {
	return func(b []byte) error {
		var s lethe.System
		if err := decodeAnswer(b, &s); err != nil {
			return err
		}
		return fields(w,
			[2]string{"NAME", s.Name},
			[2]string{"IDENTIFIERS", strings.Join(s.Identifiers, ",")},
			[2]string{"PRODUCES", strings.Join(s.Produces, ",")},
			[2]string{"TOPIC", s.Topic},
			[2]string{"OWNER", s.Owner},
			[2]string{"DESCRIPTION", s.Description},
			[2]string{"CONFIRM WITHIN", s.ConfirmWithin.String()},
			[2]string{"CREATED", timeOrDash(&s.CreatedAt)},
			[2]string{"UPDATED", timeOrDash(&s.UpdatedAt)})
	}
}
