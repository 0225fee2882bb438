package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/lethe-dev/lethe/api"
)

// runErasureRetry runs `lethe erasures retry`: one request by id, or, with
// --all, every request a filter chooses, page after page of the API's cap.
func runErasureRetry(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("erasures retry", env, stderr, true)
	var systems repeatedFlag
	var all bool
	var status, since, key string
	var limit int
	var wf waitFlags
	fs.Var(&systems, "system", "retry only this system (repeatable; with --all, one)")
	fs.BoolVar(&all, "all", false, "retry every request that matches --status, --system and --since, instead of one by id")
	fs.StringVar(&status, "status", "failed", "with --all: failed, or running (a request still open with a failed system)")
	fs.StringVar(&since, "since", "", "with --all: only failures recorded at or after this RFC 3339 time")
	fs.IntVar(&limit, "limit", 0, "with --all: requests per call, at most 100 (default 100)")
	fs.StringVar(&key, "idempotency-key", "", "with --all: run again with the same key, the calls answer as the first run's did instead of retrying anew")
	wf.register(fs)
	want, names := 1, "the request's id, or --all"
	for _, a := range args {
		if a == "--all" || a == "-all" {
			want = 0
		}
	}
	pos, err := parseArgs(fs, args, want, names)
	if err != nil {
		return err
	}
	switch {
	case wf.wait && wf.interval <= 0:
		return errors.New("erasures retry: --poll-interval must be positive")
	case all && wf.wait:
		return errors.New("erasures retry: --wait follows one request; it does not go with --all")
	case all && len(systems) > 1:
		return errors.New("erasures retry: --all takes one --system")
	case !all && (since != "" || limit != 0 || key != "" || status != "failed"):
		return errors.New("erasures retry: --status, --since, --limit and --idempotency-key go with --all")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if !all {
		var body any
		if len(systems) > 0 {
			body = map[string]any{"systems": []string(systems)}
		}
		b, err := c.Do(ctx, http.MethodPost, "/v1/erasures/"+escape(pos[0])+"/retry", body)
		if err != nil {
			return err
		}
		return showOrWait(ctx, c, cf, wf, b, stdout, stderr)
	}

	filter := map[string]any{"status": status}
	if len(systems) == 1 {
		filter["system"] = systems[0]
	}
	if since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return errors.New("erasures retry: --since must be an RFC 3339 time, such as 2026-12-01T00:00:00Z")
		}
		filter["since"] = t
	}
	if limit != 0 {
		filter["limit"] = limit
	}
	var total api.BulkRetryResult
	total.RequestIDs, total.Skipped = []string{}, []api.BulkRetrySkip{}
	for page := 1; ; page++ {
		var header []string
		if key != "" {
			// Each page is a call of its own, with a body of its own.
			header = []string{"Idempotency-Key", key + "/" + strconv.Itoa(page)}
		}
		b, err := c.Do(ctx, http.MethodPost, "/v1/erasures/retry", filter, header...)
		if err != nil {
			return err
		}
		var a api.BulkRetryResult
		if err := decodeAnswer(b, &a); err != nil {
			return err
		}
		total.Retried += a.Retried
		total.RequestIDs = append(total.RequestIDs, a.RequestIDs...)
		total.Skipped = append(total.Skipped, a.Skipped...)
		if !cf.json {
			fmt.Fprintf(stderr, "call %d: %d retried, %d skipped\n", page, a.Retried, len(a.Skipped))
		}
		if !a.More || a.Last == "" {
			break
		}
		filter["after"] = a.Last
	}
	if cf.json {
		b, err := json.Marshal(total)
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	}
	fmt.Fprintf(stdout, "%d requests retried, %d skipped\n", total.Retried, len(total.Skipped))
	if len(total.Skipped) == 0 {
		return nil
	}
	tw := table(stdout)
	fmt.Fprintln(tw, "SKIPPED\tCODE\tWHY")
	for _, s := range total.Skipped {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.RequestID, s.Code, s.Message)
	}
	return tw.Flush()
}

// repeatedFlag collects a flag given several times, such as --system.
type repeatedFlag []string

func (s *repeatedFlag) String() string { return "" }

func (s *repeatedFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}
