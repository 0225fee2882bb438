package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// Environment variables RunPull reads when PullConfig.URL or
// PullConfig.Token is empty: the ones the lethe command reads too.
const (
	EnvAPIURL = "LETHE_API_URL"
	EnvToken  = "LETHE_TOKEN"
)

// Bounds of PullConfig's lease parameters, as Lethe's API accepts them.
const (
	DefaultPullWait  = 30 * time.Second
	DefaultPullLimit = 100
	DefaultPullLease = 5 * time.Minute
	maxPullWait      = 60 * time.Second
	maxPullLimit     = 500
	minPullLease     = 10 * time.Second
	maxPullLease     = time.Hour
)

// PullConfig says where RunPull leases a pull-mode system's commands and
// how it treats them. System is required; URL and Token come from
// LETHE_API_URL and LETHE_TOKEN when empty; every other field's zero value
// is a sensible default.
type PullConfig struct {
	// URL is Lethe's API, such as http://lethe:8080.
	URL string
	// System is the pull-mode system's name in Lethe's registry.
	System string
	// Token is a bearer token with the scope connector:<System>.
	Token string
	// KeyID and Secret are the system's signing credential, as for
	// Config; when both are empty they are read from
	// LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET. With one, a lease
	// answer whose signature does not verify is refused whole and every
	// confirmation is signed.
	KeyID, Secret string
	// Wait, Limit and Lease are the lease's parameters (the GET's wait,
	// limit and lease); defaults DefaultPullWait, DefaultPullLimit and
	// DefaultPullLease.
	Wait  time.Duration
	Limit int
	Lease time.Duration
	// HTTPClient makes the calls; default one whose timeout is Wait plus
	// 30 seconds.
	HTTPClient *http.Client
	// Logger, Dedup, Concurrency, Retry, ShutdownGrace, Observer and Now
	// are Config's.
	Logger        *slog.Logger
	Dedup         DedupStore
	Concurrency   int
	Retry         RetryPolicy
	ShutdownGrace time.Duration
	Observer      Observer
	Now           func() time.Time
}

// withEnv fills URL, Token and the credential from env where empty.
func (c PullConfig) withEnv(env func(string) string) PullConfig {
	if c.URL == "" {
		c.URL = env(EnvAPIURL)
	}
	if c.Token == "" {
		c.Token = env(EnvToken)
	}
	if c.KeyID == "" && c.Secret == "" {
		c.KeyID, c.Secret = env(EnvKeyID), env(EnvSecret)
	}
	return c
}

// Validate reports the first problem of c, so that a misconfigured service
// fails at start.
func (c PullConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("connectors: pull config: the API URL must be http(s)://host ($%s)", EnvAPIURL)
	case !wire.ValidSystemName(c.System):
		return fmt.Errorf("connectors: pull config: system %q is not a valid system name", c.System)
	case c.Token == "":
		return fmt.Errorf("connectors: pull config: no token ($%s): one with the scope connector:%s", EnvToken, c.System)
	case c.Wait < 0 || c.Wait > maxPullWait:
		return fmt.Errorf("connectors: pull config: wait must be 0s to %s", maxPullWait)
	case c.Limit < 0 || c.Limit > maxPullLimit:
		return fmt.Errorf("connectors: pull config: limit must be 1 to %d", maxPullLimit)
	case c.Lease != 0 && (c.Lease < minPullLease || c.Lease > maxPullLease):
		return fmt.Errorf("connectors: pull config: lease must be %s to %s", minPullLease, maxPullLease)
	case c.Concurrency < 0:
		return errors.New("connectors: pull config: concurrency is negative")
	}
	if _, err := newSigner(c.KeyID, c.Secret); err != nil {
		return err
	}
	return c.Retry.validate()
}

// RunPull is Run for a pull-mode system: it leases the system's commands
// from Lethe's API (GET /v1/systems/{name}/commands, long-polled) until ctx
// ends, calls h for each through the same de-duplication, retries and
// confirmation rules as Run, and posts the lease's confirmations in one
// signed request (POST /v1/systems/{name}/confirmations). It returns nil
// once ctx is canceled and an error when the configuration is wrong.
//
// With a credential, a lease answer that is unsigned or badly signed is
// refused whole: none of its commands is handled (Lethe offers them again
// when their lease runs out), the refusal is logged without values, and
// RunPull backs off before it polls again. An item that is not a valid
// command for the system is skipped, logged by its problem alone, and the
// others are handled. The Observer hears of a refused answer and a skipped
// item as CommandDeadLettered (reason unsigned, bad_signature or
// malformed), since they are what Run dead-letters. A failed poll or post is retried with backoff (100ms
// doubling to 10s); confirmations are retried until Lethe accepts them
// and the next lease waits for that, so none is dropped while RunPull runs.
// At shutdown, calls in flight have ShutdownGrace and the post a few more
// seconds; a command abandoned then is offered again, and answered from
// Dedup when it was recorded.
func RunPull(ctx context.Context, cfg PullConfig, h Handler) error {
	if h == nil {
		return errors.New("connectors: nil handler")
	}
	cfg = cfg.withEnv(os.Getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	base := Config{System: cfg.System, Logger: cfg.Logger, Dedup: cfg.Dedup, Concurrency: cfg.Concurrency,
		Retry: cfg.Retry, ShutdownGrace: cfg.ShutdownGrace, Observer: cfg.Observer, Now: cfg.Now}.withDefaults()
	if cfg.Wait == 0 {
		cfg.Wait = DefaultPullWait
	}
	if cfg.Limit == 0 {
		cfg.Limit = DefaultPullLimit
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultPullLease
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.Wait + 30*time.Second}
	}
	sg, _ := newSigner(cfg.KeyID, cfg.Secret) // checked by Validate
	p := &puller{
		consumer: &consumer{cfg: base, h: h, log: base.Logger.With("system", cfg.System, "mode", "pull"), sg: sg},
		pc:       cfg,
		base:     strings.TrimRight(cfg.URL, "/") + "/v1/systems/" + url.PathEscape(cfg.System),
	}
	p.log.Info("connector started", "concurrency", base.Concurrency, "signed", sg != nil)
	p.run(ctx)
	p.log.Info("connector stopped")
	return nil
}

// puller is RunPull's loop around a consumer without Kafka: only its
// answer path (dedup store, handler, retries) and signer are used.
type puller struct {
	*consumer
	pc   PullConfig
	base string
}

func (p *puller) run(ctx context.Context) {
	hctx, dctx, release := shutdownContexts(ctx, p.cfg.ShutdownGrace)
	defer release()
	for {
		var items []wire.Command
		if err := Retry(ctx, p.log, "lease commands", func(ctx context.Context) error {
			var err error
			items, err = p.lease(ctx)
			return err
		}); err != nil {
			return
		}
		confs := p.answerAll(ctx, hctx, dctx, items)
		if len(confs) > 0 {
			if err := Retry(dctx, p.log, "post confirmations", func(ctx context.Context) error {
				return p.post(ctx, confs)
			}); err != nil {
				p.log.Warn("shutdown deadline passed before the confirmations were posted; their commands will be offered again", "confirmations", len(confs))
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// lease polls for commands. Its errors name no values: a refused answer is
// retried by the caller with backoff.
func (p *puller) lease(ctx context.Context) ([]wire.Command, error) {
	q := url.Values{"wait": {p.pc.Wait.String()}, "limit": {fmt.Sprint(p.pc.Limit)}, "lease": {p.pc.Lease.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/commands?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.pc.Token)
	resp, err := p.pc.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET commands: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET commands: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET commands answered %d", resp.StatusCode)
	}
	if p.sg != nil {
		keyID, sig := resp.Header.Values(wire.HeaderKeyID), resp.Header.Values(wire.HeaderSignature)
		k, s := "", ""
		if len(keyID) == 1 {
			k = keyID[0]
		}
		if len(sig) == 1 {
			s = sig[0]
		}
		if reason, detail := p.sg.verify(k, len(keyID) == 1, s, len(sig) == 1, body); reason != "" {
			p.cfg.Observer.CommandDeadLettered(p.cfg.System, reason)
			return nil, fmt.Errorf("refused a lease answer, none of its commands handled: %s", detail)
		}
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, errors.New("GET commands: the answer is not a JSON list of items")
	}
	cmds := make([]wire.Command, 0, len(list.Items))
	for i, raw := range list.Items {
		cmd, err := wire.DecodeCommand(raw)
		if err == nil && cmd.System != p.cfg.System {
			err = fmt.Errorf("command is addressed to system %q, not %q", cmd.System, p.cfg.System)
		}
		if err != nil {
			// wire's messages name fields, never values.
			p.log.Warn("leased item skipped: not a valid command for this system", "item", i, "reason", err.Error())
			p.cfg.Observer.CommandDeadLettered(p.cfg.System, DLQMalformed)
			continue
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// answerAll answers the leased commands as Run answers a batch: those of
// different requests in parallel up to Concurrency, those of one request in
// order, a repeated command id like its twin. Abandoned commands (shutdown)
// have no confirmation.
func (p *puller) answerAll(ctx, hctx, dctx context.Context, items []wire.Command) []wire.Confirmation {
	var order []string
	byRequest := make(map[string][]wire.Command)
	for _, cmd := range items {
		if _, ok := byRequest[cmd.RequestID]; !ok {
			order = append(order, cmd.RequestID)
		}
		byRequest[cmd.RequestID] = append(byRequest[cmd.RequestID], cmd)
	}
	var (
		mu    sync.Mutex
		confs []wire.Confirmation
		wg    sync.WaitGroup
	)
	slots := make(chan struct{}, p.cfg.Concurrency)
	for _, id := range order {
		slots <- struct{}{}
		wg.Add(1)
		go func(cmds []wire.Command) {
			defer wg.Done()
			defer func() { <-slots }()
			twins := &twinMap{m: make(map[string]wire.Confirmation)}
			for _, cmd := range cmds {
				if ctx.Err() != nil {
					return
				}
				// Pull mode defers nothing: a Resumer's work is finished
				// before its confirmation is posted.
				conf, _, ok := p.answer(ctx, hctx, dctx, cmd, twins, false)
				if !ok {
					return
				}
				mu.Lock()
				confs = append(confs, conf)
				mu.Unlock()
			}
		}(byRequest[id])
	}
	wg.Wait()
	return confs
}

// post sends confs as one JSON array, signed over its bytes when the
// connector has a credential.
func (p *puller) post(ctx context.Context, confs []wire.Confirmation) error {
	body, err := json.Marshal(confs)
	if err != nil {
		return fmt.Errorf("encode confirmations: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/confirmations", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.pc.Token)
	req.Header.Set("Content-Type", "application/json")
	if p.sg != nil {
		req.Header.Set(wire.HeaderKeyID, p.sg.keyID)
		req.Header.Set(wire.HeaderSignature, wire.Sign(p.sg.secret, body))
	}
	resp, err := p.pc.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST confirmations: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST confirmations answered %d", resp.StatusCode)
	}
	return nil
}
