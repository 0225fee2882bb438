// Package escalation tells people that an erasure request is falling behind
// its deadline: a webhook that receives each escalation, signed like the
// webhook connector's commands so one verifier serves both, and the
// counters a metrics scraper reads.
package escalation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors/webhook"
)

// Webhook posts escalations as JSON to a URL, signed with the
// Lethe-Signature header (see connectors/webhook: its Verifier checks it).
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
}

// NewWebhook returns a Webhook for rawURL (http or https). An empty secret
// sends unsigned requests, which the receiver cannot authenticate: only for
// trusted networks.
func NewWebhook(rawURL string, secret []byte, client *http.Client) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("escalation webhook must be an http or https URL")
	}
	if len(secret) > 0 && len(secret) < webhook.MinSecretBytes {
		return nil, fmt.Errorf("escalation webhook secret must be at least %d bytes", webhook.MinSecretBytes)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Webhook{url: rawURL, secret: append([]byte(nil), secret...), client: client}, nil
}

// Notify posts e and succeeds on any 2xx answer. Other answers and
// transport errors are returned for the caller to retry.
func (w *Webhook) Notify(ctx context.Context, e lethe.Escalation) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode escalation: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("escalation webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", e.RequestID+"/"+e.Point)
	if len(w.secret) > 0 {
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(w.secret, time.Now(), body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL may hold a token: report the failure without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("escalation webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("escalation webhook answered %d", resp.StatusCode)
	}
	return nil
}

// Counter counts escalations by kind and writes them in the Prometheus text
// format, so that an alert can fire on lethe_escalations_total.
type Counter struct {
	mu     sync.Mutex
	counts map[lethe.EscalationKind]int64
}

// Count adds one escalation of kind k.
func (c *Counter) Count(k lethe.EscalationKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[lethe.EscalationKind]int64{}
	}
	c.counts[k]++
}

// WriteTo writes the counter in the Prometheus text exposition format;
// every kind appears, at zero until it happens.
func (c *Counter) WriteTo(w io.Writer) (int64, error) {
	c.mu.Lock()
	counts := map[lethe.EscalationKind]int64{}
	for k, v := range c.counts {
		counts[k] = v
	}
	c.mu.Unlock()
	kinds := []string{string(lethe.EscalationReminder), string(lethe.EscalationTarget), string(lethe.EscalationOverdue),
		string(lethe.EscalationNotDispatched)}
	sort.Strings(kinds)
	var b bytes.Buffer
	b.WriteString("# HELP lethe_escalations_total Erasure requests escalated, by kind (reminder, target, overdue, not_dispatched).\n")
	b.WriteString("# TYPE lethe_escalations_total counter\n")
	for _, k := range kinds {
		fmt.Fprintf(&b, "lethe_escalations_total{kind=%q} %d\n", k, counts[lethe.EscalationKind(k)])
	}
	return b.WriteTo(w)
}

// Handler serves the counter at a metrics route.
func (c *Counter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = c.WriteTo(w)
	})
}
