package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/wire"
)

// A service that restores a backup brings back the data of every subject
// Lethe erased after the backup was taken. Lethe's suppression list
// (GET /v1/suppressions) names those subjects by keyed digests; a
// SuppressionList keeps a copy of it in the service, matches the service's
// own identifiers against it with the same key, and erases the matches
// again through the service's Handler.

// Defaults of SuppressionConfig.
const (
	// DefaultSuppressionMaxAge is how stale the list may be when Suppressed
	// or ReErase answer without syncing first.
	DefaultSuppressionMaxAge = time.Minute
	// DefaultSuppressionTimeout bounds each HTTP request of the default
	// client.
	DefaultSuppressionTimeout = 30 * time.Second
	// maxSuppressionBody bounds one page's body; a full page of the API's
	// largest size is a fraction of it.
	maxSuppressionBody = 8 << 20
)

// SuppressionConfig says where Lethe's API is and how to match against its
// suppression list. URL and Digester are required.
type SuppressionConfig struct {
	// URL is the base URL of Lethe's API, such as https://lethe.internal.
	URL string
	// Digester computes digests under LETHE_SUBJECT_KEY, the key Lethe's
	// API digests identifiers with: build it with digest.ParseKey and
	// digest.New from the secret the service is given. With another key
	// nothing ever matches.
	Digester *digest.Digester
	// Since keeps only the subjects of requests that finished at or after
	// it: the time the oldest backup the service may restore was taken.
	// Zero means the whole ledger.
	Since time.Time
	// Types, when set, fetches only identifiers of these types: those the
	// service holds. Suppressed then refuses identifiers of other types,
	// rather than answer for a part of the list it never fetched.
	Types []string
	// HTTPClient sends the requests; default a client with
	// DefaultSuppressionTimeout.
	HTTPClient *http.Client
	// Token is the bearer credential sent with every request: a Lethe
	// token (`lethe token create --scopes suppressions:read`) or an OIDC
	// access token with that scope. Lethe's API answers 401 without one.
	Token string
	// Authorize, when set, prepares every request before it is sent, after
	// Token is set: for a credential that changes, such as an OAuth token
	// source's, it sets the Authorization header itself.
	Authorize func(*http.Request) error
	// PageSize is the limit of each page; zero lets Lethe choose (500).
	PageSize int
	// MaxAge is how stale the list may be when Suppressed or ReErase
	// answer: older, they sync first. Zero means
	// DefaultSuppressionMaxAge; a negative value syncs on every call.
	MaxAge time.Duration
	// Retry says how ReErase retries a handler that returned an error;
	// the zero value is the default policy, as for Run.
	Retry RetryPolicy
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Validate reports the first problem of c.
func (c SuppressionConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("connectors: suppression config: no URL")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("connectors: suppression config: %q is not an http or https URL", c.URL)
	case c.Digester == nil:
		return errors.New("connectors: suppression config: no digester")
	case c.PageSize < 0:
		return errors.New("connectors: suppression config: page size is negative")
	}
	for _, t := range c.Types {
		if !wire.ValidIdentifierType(t) {
			return fmt.Errorf("connectors: suppression config: %q is not an identifier type", t)
		}
	}
	return c.Retry.validate()
}

// SuppressionList is a service's copy of Lethe's suppression list. It
// remembers where it stopped reading, so each sync fetches only the entries
// added since, and it keeps digests only: the values it is asked about are
// digested on the spot and never kept. It is safe for concurrent use.
type SuppressionList struct {
	cfg      SuppressionConfig
	endpoint string
	feeds    []string // the type of each feed; "" for all types

	syncMu  sync.Mutex        // one sync at a time
	cursors map[string]string // feed → next_cursor; guarded by syncMu

	mu      sync.RWMutex
	entries map[suppressionKey][]erasedBy // guarded by mu
	synced  time.Time                     // start of the last complete sync; guarded by mu
}

type suppressionKey struct {
	idType, digest string
}

// erasedBy is one request that erased an identifier.
type erasedBy struct {
	requestID string
	at        time.Time
}

// NewSuppressionList returns an empty list for cfg; the first Sync, or the
// first Suppressed or ReErase, fills it.
func NewSuppressionList(cfg SuppressionConfig) (*SuppressionList, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	endpoint, err := url.JoinPath(cfg.URL, "v1", "suppressions")
	if err != nil {
		return nil, fmt.Errorf("connectors: suppression config: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultSuppressionTimeout}
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultSuppressionMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Retry = cfg.Retry.withDefaults()
	feeds := []string{""}
	if len(cfg.Types) > 0 {
		feeds = slices.Compact(slices.Sorted(slices.Values(cfg.Types)))
	}
	return &SuppressionList{
		cfg:      cfg,
		endpoint: endpoint,
		feeds:    feeds,
		cursors:  make(map[string]string),
		entries:  make(map[suppressionKey][]erasedBy),
	}, nil
}

// Len returns how many identifiers the list holds.
func (l *SuppressionList) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.entries)
}

// Sync fetches the entries added to Lethe's list since the last sync (all of
// them, from Since, the first time) and reports how many were new to this
// copy. On an error the entries fetched before it are kept, and so is the
// position reached, so the next Sync continues from there.
func (l *SuppressionList) Sync(ctx context.Context) (added int, err error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.sync(ctx)
}

// sync runs with syncMu held.
func (l *SuppressionList) sync(ctx context.Context) (added int, err error) {
	start := l.cfg.Now()
	for _, feed := range l.feeds {
		n, err := l.syncFeed(ctx, feed)
		added += n
		if err != nil {
			return added, err
		}
	}
	l.mu.Lock()
	l.synced = start
	l.mu.Unlock()
	return added, nil
}

// syncFeed pages through one feed from its cursor until Lethe has nothing
// more. A cursor Lethe no longer accepts (cursor_expired: its database
// moved to another server) sends the feed back to Since once; the entries
// read again are already known and add nothing.
func (l *SuppressionList) syncFeed(ctx context.Context, feed string) (added int, err error) {
	restarted := false
	for {
		page, err := l.fetch(ctx, feed, l.cursors[feed])
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Code == "cursor_expired" && !restarted && l.cursors[feed] != "" {
			delete(l.cursors, feed)
			restarted = true
			continue
		}
		if err != nil {
			return added, err
		}
		added += l.add(page.Items)
		if page.NextCursor != "" {
			l.cursors[feed] = page.NextCursor
		}
		if !page.HasMore {
			return added, nil
		}
		if page.NextCursor == "" || len(page.Items) == 0 {
			return added, errors.New("connectors: suppression list: Lethe answered has_more without a next_cursor to go on with")
		}
	}
}

// suppressionItem is one entry of GET /v1/suppressions.
type suppressionItem struct {
	RequestID string    `json:"request_id"`
	Type      string    `json:"type"`
	Digest    string    `json:"digest"`
	ErasedAt  time.Time `json:"erased_at"`
}

// suppressionPage is the body of GET /v1/suppressions.
type suppressionPage struct {
	Items      []suppressionItem `json:"items"`
	NextCursor string            `json:"next_cursor"`
	HasMore    bool              `json:"has_more"`
}

// fetch reads one page and checks it.
func (l *SuppressionList) fetch(ctx context.Context, feed, cursor string) (suppressionPage, error) {
	q := url.Values{}
	if !l.cfg.Since.IsZero() {
		q.Set("since", l.cfg.Since.UTC().Format(time.RFC3339Nano))
	}
	if feed != "" {
		q.Set("type", feed)
	}
	if l.cfg.PageSize > 0 {
		q.Set("limit", strconv.Itoa(l.cfg.PageSize))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return suppressionPage{}, fmt.Errorf("connectors: suppression list: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if l.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.Token)
	}
	if l.cfg.Authorize != nil {
		if err := l.cfg.Authorize(req); err != nil {
			return suppressionPage{}, fmt.Errorf("connectors: suppression list: authorize: %w", err)
		}
	}
	res, err := l.cfg.HTTPClient.Do(req)
	if err != nil {
		return suppressionPage{}, fmt.Errorf("connectors: suppression list: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxSuppressionBody+1))
	if err != nil {
		return suppressionPage{}, fmt.Errorf("connectors: suppression list: read the answer: %w", err)
	}
	if len(body) > maxSuppressionBody {
		return suppressionPage{}, fmt.Errorf("connectors: suppression list: an answer over %d bytes", maxSuppressionBody)
	}
	if res.StatusCode != http.StatusOK {
		return suppressionPage{}, newAPIError(res.StatusCode, body)
	}
	var page suppressionPage
	if err := json.Unmarshal(body, &page); err != nil {
		return suppressionPage{}, fmt.Errorf("connectors: suppression list: decode the answer: %w", err)
	}
	for _, it := range page.Items {
		if !wire.ValidID(it.RequestID) || !wire.ValidIdentifierType(it.Type) || it.Digest == "" || it.ErasedAt.IsZero() {
			return suppressionPage{}, errors.New("connectors: suppression list: Lethe answered an entry without a request id, a type, a digest or a time")
		}
	}
	return page, nil
}

// add records a page's entries and returns how many were new.
func (l *SuppressionList) add(items []suppressionItem) (added int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		k := suppressionKey{it.Type, it.Digest}
		by := l.entries[k]
		if slices.ContainsFunc(by, func(e erasedBy) bool { return e.requestID == it.RequestID }) {
			continue
		}
		l.entries[k] = append(by, erasedBy{requestID: it.RequestID, at: it.ErasedAt})
		added++
	}
	return added
}

// refresh syncs unless the last complete sync is younger than MaxAge.
func (l *SuppressionList) refresh(ctx context.Context) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	synced := l.synced
	l.mu.RUnlock()
	if !synced.IsZero() && l.cfg.MaxAge > 0 && l.cfg.Now().Sub(synced) < l.cfg.MaxAge {
		return nil
	}
	_, err := l.sync(ctx)
	return err
}

// Suppressed returns those of ids that Lethe erased: the identifiers whose
// digest is on the list, in the order given. It syncs first when the list
// is older than MaxAge, and fails rather than answer from a list it could
// not bring up to date. An identifier of a type outside Types is an error,
// since that part of the list was never fetched.
func (l *SuppressionList) Suppressed(ctx context.Context, ids []wire.Identifier) ([]wire.Identifier, error) {
	matches, err := l.match(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Identifier, len(matches))
	for i, m := range matches {
		out[i] = m.id
	}
	return out, nil
}

// match is one identifier on the list and the requests that erased it,
// oldest first.
type match struct {
	id wire.Identifier
	by []erasedBy
}

func (l *SuppressionList) match(ctx context.Context, ids []wire.Identifier) ([]match, error) {
	for _, id := range ids {
		if !wire.ValidIdentifierType(id.Type) {
			return nil, errors.New("connectors: suppression list: an identifier without a valid type")
		}
		if l.feeds[0] != "" && !slices.Contains(l.feeds, id.Type) {
			return nil, fmt.Errorf("connectors: suppression list: type %s is not among the configured Types", id.Type)
		}
	}
	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	// Digests are computed outside the lock: they are the costly part.
	keys := make([]suppressionKey, len(ids))
	for i, id := range ids {
		keys[i] = suppressionKey{id.Type, l.cfg.Digester.Sum(id.Type, id.Value)}
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []match
	for i, k := range keys {
		if by, ok := l.entries[k]; ok {
			by = slices.Clone(by)
			slices.SortFunc(by, func(a, b erasedBy) int {
				if c := a.at.Compare(b.at); c != 0 {
					return c
				}
				return strings.Compare(a.requestID, b.requestID)
			})
			out = append(out, match{id: ids[i], by: by})
		}
	}
	return out, nil
}

// ReErasure is what ReErase did for the identifiers one erasure request
// had erased.
type ReErasure struct {
	// RequestID is Lethe's request that erased these identifiers first.
	RequestID string
	// Identifiers are the suppressed identifiers handed to the handler.
	// They are personal data: never log them.
	Identifiers []wire.Identifier
	// Result is the handler's answer, and Err its error after the retries
	// of SuppressionConfig.Retry (a panic is an error too).
	Result Result
	Err    error
}

// ReErase erases again, through the service's own handler, the identifiers
// among ids that Lethe erased: a restored backup brought them back. It calls
// h as if Lethe had sent a command, once per erasure request, with the
// request's id, the system's name, that request's suppressed identifiers,
// and a fresh command id, so that a handler's record of commands it carried
// out (which answers a repeated command without erasing) does not skip data
// that came back since. An identifier two requests erased goes with the
// first of them. A handler that returned an error is retried as Run would.
//
// The identifiers are those of the records restored: the handler erases by
// them as it does for a command, retention rules included, so a subject the
// service holds again for a new reason under the same identifier (an
// account opened again after the erasure) is erased too. Hand ReErase the
// identifiers of restored records only.
//
// It returns one ReErasure per request, in the order of their first
// identifier in ids, and an error when the list could not be synced or ids
// are refused (see Suppressed); when ctx ends, what was done so far and
// ctx's error.
func (l *SuppressionList) ReErase(ctx context.Context, system string, h Handler, ids []wire.Identifier) ([]ReErasure, error) {
	if h == nil {
		return nil, errors.New("connectors: nil handler")
	}
	if !wire.ValidSystemName(system) {
		return nil, fmt.Errorf("connectors: %q is not a valid system name", system)
	}
	matches, err := l.match(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []ReErasure
	index := map[string]int{}
	for _, m := range matches {
		first := m.by[0].requestID
		i, ok := index[first]
		if !ok {
			i = len(out)
			index[first] = i
			out = append(out, ReErasure{RequestID: first})
		}
		out[i].Identifiers = append(out[i].Identifiers, m.id)
	}
	for i := range out {
		now := l.cfg.Now().UTC()
		req := Request{
			CommandID:   uuid.NewString(),
			RequestID:   out[i].RequestID,
			System:      system,
			Attempt:     1,
			Identifiers: out[i].Identifiers,
			IssuedAt:    now,
			ConfirmBy:   now,
		}
		res, _, ok, err := callHandler(ctx, ctx, h, req, l.cfg.Retry, nil)
		if !ok {
			return out[:i], ctx.Err()
		}
		out[i].Result, out[i].Err = res, err
	}
	return out, nil
}

// APIError is an error answer of Lethe's API, with the contract's code
// (invalid_since, database_unavailable, …) for programs to tell apart.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("connectors: suppression list: Lethe answered %d %s: %s", e.Status, e.Code, e.Message)
}

// newAPIError reads the contract's error body, or names the status alone
// when the body is not one (a proxy's page, say).
func newAPIError(status int, body []byte) *APIError {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Error.Code == "" {
		return &APIError{Status: status, Code: "unexpected_answer", Message: http.StatusText(status)}
	}
	return &APIError{Status: status, Code: b.Error.Code, Message: b.Error.Message}
}
