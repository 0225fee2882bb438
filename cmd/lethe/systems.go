package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
)

const systemsUsage = `Usage: lethe systems <list|get|stats|put|retire> [flags]

  list     the active systems
  get NAME one system and its recent health: open commands, failures in
           the last 24 hours, confirmation time p50/p95, last confirmation
  stats NAME
           the health alone (with --json, the API's stats answer)
  put NAME --identifiers TYPE,... [--produces TYPE,...] [--topic T]
           [--owner TEAM] [--description TEXT] [--confirm-within 72h] [--batch]
           register a system, or replace it whole (flags left out take the
           API's defaults, not the old values)
  retire NAME
           later requests no longer target it; history keeps it

Every command takes --api-url ($LETHE_API_URL, default http://127.0.0.1:8080)
and --token ($LETHE_TOKEN); all but retire take --json (get --json prints
the system as the API answers it; stats --json its health). Exit status as
for lethe erasures: 0 ok, 1 bad command line, 2 refused (4xx), 3 unavailable.
`

// runSystems runs `lethe systems`: the registry of systems through the API.
func runSystems(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, systemsUsage)
		return errors.New("systems: name a subcommand: list, get, stats, put or retire")
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		return runSystemList(ctx, rest, env, stdout, stderr)
	case "get":
		return runSystemGet(ctx, rest, env, stdout, stderr)
	case "stats":
		return runSystemStats(ctx, rest, env, stdout, stderr)
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
	path := "/v1/systems/" + escape(pos[0])
	if cf.json {
		return clientCall(ctx, cf, stdout, http.MethodGet, path, nil, nil)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	b, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	sb, err := c.Do(ctx, http.MethodGet, path+"/stats", nil)
	if err != nil {
		return err
	}
	var sys lethe.System
	var st lethe.SystemStats
	if err := decodeAnswer(b, &sys); err != nil {
		return err
	}
	if err := decodeAnswer(sb, &st); err != nil {
		return err
	}
	return fields(stdout, append(systemRows(sys), statsRows(st)...)...)
}

func runSystemStats(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("systems stats", env, stderr, true)
	pos, err := parseArgs(fs, args, 1, "the system's name")
	if err != nil {
		return err
	}
	return clientCall(ctx, cf, stdout, http.MethodGet, "/v1/systems/"+escape(pos[0])+"/stats", nil, func(b []byte) error {
		var st lethe.SystemStats
		if err := decodeAnswer(b, &st); err != nil {
			return err
		}
		return fields(stdout, append([][2]string{{"NAME", st.System}}, statsRows(st)...)...)
	})
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
	batch := fs.Bool("batch", false, "the system takes batch commands for the subjects of bulk erasures")
	mode := fs.String("mode", "", "kafka (the default) or pull: the system leases its commands over HTTP (docs/connectors.md, Pull mode)")
	pos, err := parseArgs(fs, args, 1, "the system's name")
	if err != nil {
		return err
	}
	ids := splitList(identifiers)
	if len(ids) == 0 {
		return errors.New("systems put: --identifiers is required, such as --identifiers email,user_id")
	}
	body := map[string]any{"identifiers": ids, "topic": topic, "owner": owner, "description": description,
		"confirm_within": confirmWithin, "batch": *batch}
	if *mode != "" {
		body["mode"] = *mode
	}
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
		return fields(w, systemRows(s)...)
	}
}

func systemRows(s lethe.System) [][2]string {
	return [][2]string{
		{"NAME", s.Name},
		{"IDENTIFIERS", strings.Join(s.Identifiers, ",")},
		{"PRODUCES", strings.Join(s.Produces, ",")},
		{"TOPIC", s.Topic},
		{"OWNER", s.Owner},
		{"DESCRIPTION", s.Description},
		{"CONFIRM WITHIN", s.ConfirmWithin.String()},
		{"BATCH", strconv.FormatBool(s.Batch)},
		{"MODE", string(s.Mode)},
		{"CREATED", timeOrDash(&s.CreatedAt)},
		{"UPDATED", timeOrDash(&s.UpdatedAt)},
	}
}

// statsRows shows a system's health as `lethe systems get` prints it.
func statsRows(st lethe.SystemStats) [][2]string {
	return [][2]string{
		{"OPEN COMMANDS", strconv.FormatInt(st.OpenCommands, 10)},
		{"FAILED (24H)", strconv.FormatInt(st.FailedLast24h, 10)},
		{"CONFIRMATIONS", strconv.FormatInt(st.Confirmations, 10) + " in the last " + st.Window.String()},
		{"CONFIRM P50", seconds(st.ConfirmationP50Seconds)},
		{"CONFIRM P95", seconds(st.ConfirmationP95Seconds)},
		{"LAST CONFIRMED", timeOrDash(st.LastConfirmationAt)},
	}
}

// seconds writes a duration in seconds as Go does (1.5s, 2h3m0s), or "-".
func seconds(s *float64) string {
	if s == nil {
		return "-"
	}
	return time.Duration(*s * float64(time.Second)).Round(time.Millisecond).String()
}
