package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Config is the connector's configuration file. Zero values mean the
// defaults below, so a minimal file names only system, url and secret_env.
type Config struct {
	// System is the service's name in Lethe's registry.
	System string `yaml:"system"`
	// Brokers are the Kafka bootstrap addresses; Main falls back to
	// $LETHE_KAFKA_BROKERS and then to the contract's default.
	Brokers []string `yaml:"brokers"`
	// Kafka secures the connections to the brokers: TLS, SASL.
	Kafka connectors.KafkaSecurity `yaml:"kafka"`
	// Signing is the system's credential for Lethe's signed commands and
	// confirmations (not the endpoint's secret_env); absent, the SDK reads
	// LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET.
	Signing *connectors.SigningCredential `yaml:"signing"`
	// Topic is where the system's commands arrive; default
	// wire.DefaultTopic(System). Set it when the system was registered with
	// a topic of its own.
	Topic string `yaml:"topic"`
	// URL is the endpoint that receives the commands.
	URL string `yaml:"url"`
	// SecretEnv names the environment variable that holds the shared
	// secret, which thereby never sits in the file.
	SecretEnv string `yaml:"secret_env"`
	// Timeout bounds one HTTP attempt, response body included.
	Timeout time.Duration `yaml:"timeout"`
	// Retries bounds how hard the connector tries one command.
	Retries RetryConfig `yaml:"retries"`
	// Headers are sent with every request, for a gateway in front of the
	// endpoint that wants its own credentials. The protocol's headers cannot
	// be overridden.
	Headers map[string]string `yaml:"headers"`
	// Poll says how the connector follows an endpoint that answers 202
	// Accepted with a status URL: a vendor that takes days to erase.
	Poll PollConfig `yaml:"poll"`
	// Callback, when set, lets the endpoint post the final answer of a
	// command it accepted with 202 to the connector, instead of or besides
	// being polled.
	Callback *CallbackConfig `yaml:"callback"`
	// StoreDB, when set, keeps the SDK's dedup store, and with it the
	// commands waiting for the endpoint's answer, in PostgreSQL, so that
	// they survive restarts and replicas share them. Main opens it; it
	// is ignored when Store is set.
	StoreDB *StoreConfig `yaml:"store"`

	// Store is the SDK's dedup store, which also keeps the commands
	// waiting for the endpoint's final answer so that they survive a
	// restart: Main passes it to connectors.Run as its Dedup. Default an
	// in-memory store; a connector that must resume them after a restart,
	// or runs several replicas, uses connectors.NewPostgresDedup's (Main
	// opens one when the file has store).
	Store connectors.PendingStore `yaml:"-"`
	// Logger receives the connector's logs, which never carry identifier
	// values or response bodies; default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Now stamps the signatures; default time.Now.
	Now func() time.Time `yaml:"-"`
}

// RetryConfig is the bounded retry policy for transient failures of the
// endpoint: 5xx, 429, timeouts and connection errors.
type RetryConfig struct {
	// MaxAttempts counts HTTP attempts per command, the first included.
	MaxAttempts int `yaml:"max_attempts"`
	// Initial is the backoff after the first failure; it doubles after each
	// further one.
	Initial time.Duration `yaml:"initial"`
	// Max caps the backoff, a Retry-After included; default
	// DefaultMaxDelay, or Initial when that is longer.
	Max time.Duration `yaml:"max"`
}

// PollConfig is how a status URL is polled: a capped exponential backoff
// with jitter between polls, and the hosts a status URL may name.
type PollConfig struct {
	// Enabled follows an endpoint's 202 Accepted to its status URL; off
	// (and without a callback), a 202 is confirmed failed, as any answer
	// the protocol does not define. The command's offset is committed
	// once the poll is recorded, so a slow endpoint holds up no other
	// command.
	Enabled bool `yaml:"enabled"`
	// Initial is the wait before the first poll; it doubles after each
	// poll that answers "still working".
	Initial time.Duration `yaml:"initial"`
	// Max caps the wait between polls, a Retry-After included; default
	// DefaultPollMax, or Initial when that is longer.
	Max time.Duration `yaml:"max"`
	// AllowHosts names the hosts (as in a URL: "status.vendor.example" or
	// "status.vendor.example:8443") a status URL may name besides the
	// configured url's own. A status URL on any other host is refused, so
	// that an endpoint cannot send the connector's signed requests
	// anywhere it likes.
	AllowHosts []string `yaml:"allow_hosts"`
}

// CallbackConfig is where the connector listens for the endpoint's
// callbacks and the secret that signs them.
type CallbackConfig struct {
	// Listen is the address (host:port) of the callback server, which
	// serves POST /callbacks/{command_id}.
	Listen string `yaml:"listen"`
	// SecretFile holds the secret that signs callbacks, at least
	// MinSecretBytes long; surrounding white space is ignored. It is not
	// the endpoint's secret_env, so that each direction can be rotated on
	// its own.
	SecretFile string `yaml:"secret_file"`
}

// StoreConfig names the PostgreSQL database of the connector's store
// (connectors.NewPostgresDedup), which creates its tables there.
type StoreConfig struct {
	// DatabaseURLEnv names the environment variable that holds the
	// database's URL (lib/pq syntax), which may carry a password.
	DatabaseURLEnv string `yaml:"database_url_env"`
	// Table is the store's table, optionally schema-qualified; default
	// connectors.DefaultDedupTable.
	Table string `yaml:"table"`
}

func (sc *StoreConfig) validate() error {
	switch {
	case sc == nil:
		return nil
	case sc.DatabaseURLEnv == "":
		return errors.New("webhook: config: store.database_url_env is missing")
	case !connectors.ValidEnvName(sc.DatabaseURLEnv):
		return fmt.Errorf("webhook: config: store.database_url_env %q is not an environment variable name", sc.DatabaseURLEnv)
	case sc.Table != "" && !storeTableRe.MatchString(sc.Table):
		return fmt.Errorf("webhook: config: store.table %q is not a table name (lower-case letters, digits and _, optionally schema.table)", sc.Table)
	}
	return nil
}

// storeTableRe is what NewPostgresDedup accepts as a table name.
var storeTableRe = regexp.MustCompile(`^([a-z_][a-z0-9_]{0,47}\.)?[a-z_][a-z0-9_]{0,47}$`)

// Defaults of Config's optional fields.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxAttempts  = 4
	DefaultInitialDelay = 500 * time.Millisecond
	DefaultMaxDelay     = 10 * time.Second
	// MaxAttemptsLimit keeps one command from occupying the connector for
	// long: past it, Lethe's own re-dispatch is the better retry.
	MaxAttemptsLimit   = 20
	DefaultPollInitial = 30 * time.Second
	DefaultPollMax     = time.Hour
	// DefaultBrokers is the contract's default of LETHE_KAFKA_BROKERS.
	DefaultBrokers = "127.0.0.1:9092"
	// BrokersEnv is the variable Main reads when the file names no brokers.
	BrokersEnv = "LETHE_KAFKA_BROKERS"
)

// MinSecretBytes is the shortest shared secret accepted on either side: an
// HMAC is only as strong as its key.
const MinSecretBytes = 32

var (
	// headerNameRe is RFC 9110's token.
	headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// reservedHeaders are set by the protocol or by net/http; a configured
// header of these names would forge or break the request.
var reservedHeaders = map[string]bool{
	"Content-Type":      true,
	"Content-Length":    true,
	"Host":              true,
	"Transfer-Encoding": true,
	"Connection":        true,
	HeaderSignature:     true,
	HeaderCommandID:     true,
	HeaderIdempotency:   true,
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("webhook: config: %w", err)
	}
	defer f.Close()
	var cfg Config
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("webhook: config %s: the file is empty", path)
		}
		return Config{}, fmt.Errorf("webhook: config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return cfg, nil
}

// Validate reports the first problem of c, so that a misconfigured connector
// fails at start instead of at the first erasure.
func (c Config) Validate() error {
	switch {
	case !wire.ValidSystemName(c.System):
		return fmt.Errorf("webhook: config: system %q is not a valid system name", c.System)
	case c.SecretEnv == "":
		return errors.New("webhook: config: secret_env is missing")
	case !connectors.ValidEnvName(c.SecretEnv):
		return fmt.Errorf("webhook: config: secret_env %q is not an environment variable name", c.SecretEnv)
	case c.Timeout < 0:
		return errors.New("webhook: config: timeout is negative")
	case c.Retries.MaxAttempts < 0 || c.Retries.MaxAttempts > MaxAttemptsLimit:
		return fmt.Errorf("webhook: config: retries.max_attempts must be between 1 and %d", MaxAttemptsLimit)
	case c.Retries.Initial < 0:
		return errors.New("webhook: config: retries.initial is negative")
	case c.Retries.Max < 0:
		return errors.New("webhook: config: retries.max is negative")
	case c.Poll.Initial < 0:
		return errors.New("webhook: config: poll.initial is negative")
	case c.Poll.Max < 0:
		return errors.New("webhook: config: poll.max is negative")
	}
	if r := c.withDefaults().Retries; r.Initial > r.Max {
		return fmt.Errorf("webhook: config: retries.initial (%s) is above retries.max (%s)", r.Initial, r.Max)
	}
	if p := c.withDefaults().Poll; p.Initial > p.Max {
		return fmt.Errorf("webhook: config: poll.initial (%s) is above poll.max (%s)", p.Initial, p.Max)
	}
	if err := c.Callback.validate(); err != nil {
		return err
	}
	if err := c.StoreDB.validate(); err != nil {
		return err
	}
	for _, h := range c.Poll.AllowHosts {
		if h == "" || strings.ContainsAny(h, "/@?# ") {
			return fmt.Errorf("webhook: config: poll.allow_hosts: %q is not a host", h)
		}
	}
	if err := validURL(c.URL); err != nil {
		return fmt.Errorf("webhook: config: url: %w", err)
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return errors.New("webhook: config: an empty broker address")
		}
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("webhook: config: %w", err)
	}
	if err := c.Signing.Validate(); err != nil {
		return fmt.Errorf("webhook: config: %w", err)
	}
	for name, value := range c.Headers {
		switch {
		case !headerNameRe.MatchString(name):
			return fmt.Errorf("webhook: config: headers: %q is not a header name", name)
		case reservedHeaders[http.CanonicalHeaderKey(name)]:
			return fmt.Errorf("webhook: config: headers: %s is set by the protocol", http.CanonicalHeaderKey(name))
		case strings.ContainsAny(value, "\r\n\x00"):
			return fmt.Errorf("webhook: config: headers: the value of %s has a line break", name)
		}
	}
	return nil
}

func (cb *CallbackConfig) validate() error {
	if cb == nil {
		return nil
	}
	if cb.Listen == "" {
		return errors.New("webhook: config: callback.listen is missing")
	}
	if _, port, err := net.SplitHostPort(cb.Listen); err != nil || port == "" {
		return fmt.Errorf("webhook: config: callback.listen %q is not host:port", cb.Listen)
	}
	if cb.SecretFile == "" {
		return errors.New("webhook: config: callback.secret_file is missing")
	}
	return nil
}

// readCallbackSecret reads the callback secret from its file and checks its
// length; errors name the file, never its content.
func readCallbackSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhook: callback.secret_file: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("webhook: callback.secret_file %s holds %d bytes; the callback secret needs at least %d", path, len(secret), MinSecretBytes)
	}
	return secret, nil
}

func validURL(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url's errors quote the input, which is configuration, not personal data.
		return err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the scheme must be http or https")
	case u.Host == "":
		return errors.New("the host is missing")
	case u.User != nil:
		// Credentials in the URL would end up in error messages; a gateway
		// credential belongs in headers.
		return errors.New("must not carry user:password; use headers")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = wire.DefaultTopic(c.System)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries.MaxAttempts == 0 {
		c.Retries.MaxAttempts = DefaultMaxAttempts
	}
	if c.Retries.Initial == 0 {
		c.Retries.Initial = DefaultInitialDelay
	}
	if c.Retries.Max == 0 {
		c.Retries.Max = max(DefaultMaxDelay, c.Retries.Initial)
	}
	if c.Poll.Initial == 0 {
		c.Poll.Initial = DefaultPollInitial
	}
	if c.Poll.Max == 0 {
		c.Poll.Max = max(DefaultPollMax, c.Poll.Initial)
	}
	if c.Store == nil {
		c.Store = connectors.NewMemoryDedup(connectors.DefaultDedupSize).(connectors.PendingStore)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
