package webhook

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	// Store is the SDK's dedup store, which also keeps the polls of status
	// URLs in progress so that they survive a restart: Main passes it to
	// connectors.Run as its Dedup. Default an in-memory store; a connector
	// that must resume its polls after a restart, or runs several
	// replicas, uses connectors.NewPostgresDedup's.
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
	// Enabled follows an endpoint's 202 Accepted to its status URL; off,
	// a 202 is confirmed failed, as any answer the protocol does not
	// define. While it polls, the connector holds the command's Kafka
	// message uncommitted, and with it the next messages of its batch:
	// turn it on for endpoints that finish within minutes or hours, not
	// days.
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
