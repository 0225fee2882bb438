package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/escalation"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/registry"
)

// config is every setting of every role, read from the environment and then
// from flags, which win. Each role validates only what it uses.
type config struct {
	DatabaseURL       string
	HTTPAddr          string
	KafkaBrokers      string
	TemporalAddress   string
	TemporalNamespace string
	UIAddr            string
	HealthAddr        string
	MetricsAddr       string
	SubjectKey        string
	CodecKeys         string
	CodecPlainBefore  string
	CodecAddr         string
	CodecOrigins      string
	SigningKey        string
	SigningRetired    string
	Retention         string
	LogLevel          string
	LogFormat         string
	TopicPartitions   int
	MaxAttempts       int

	// Transport security of Kafka and Temporal (transport.go).
	KafkaTLS              string
	KafkaTLSCA            string
	KafkaTLSCert          string
	KafkaTLSKey           string
	KafkaTLSServerName    string
	KafkaSASLMechanism    string
	KafkaSASLUsername     string
	KafkaSASLPassword     string
	KafkaSASLPasswordFile string
	TemporalTLS           string
	TemporalTLSCA         string
	TemporalTLSCert       string
	TemporalTLSKey        string
	TemporalTLSServerName string
	TemporalAPIKey        string

	// Deadlines and escalations.
	Deadline         string
	TargetBefore     string
	DeadlinePolicies string
	Reminders        string
	Settle           string
	EscalationURL    string
	EscalationSecret string

	// Authentication of the API and the codec endpoint.
	Auth         string
	OIDCIssuer   string
	OIDCAudience string
	DevToken     string
	RateLimit    string
	RateBurst    int

	// DatabaseNamed says LETHE_DATABASE_URL (or --database-url) was given
	// rather than defaulted: `lethe codec` then reads Lethe tokens there.
	DatabaseNamed bool
	// Signed messages.
	SystemKey         string
	CredentialOverlap string
	ReconcileInterval string
	ReconcileGrace    string
	RequireSignatures string

	// Fail-over of workers and relays (roles.Failover).
	KafkaSessionTimeout   string
	KafkaHeartbeat        string
	KafkaRebalanceTimeout string
	WorkflowTaskTimeout   string
	StickyTimeout         string
	WorkerStopTimeout     string

	// lethe dev only.
	DataDir   string
	Demo      bool
	Ephemeral bool
}

// setting is one configuration entry: its variable, its flag, its default.
type setting struct {
	env, flag, def, usage string
	target                *string
}

func (c *config) settings() []setting {
	return []setting{
		{"LETHE_DATABASE_URL", "database-url", "postgres://postgres@127.0.0.1:5432/lethe?sslmode=disable", "PostgreSQL URL (lib/pq)", &c.DatabaseURL},
		{"LETHE_HTTP_ADDR", "http-addr", "127.0.0.1:8080", "API listen address", &c.HTTPAddr},
		{"LETHE_KAFKA_BROKERS", "kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers", &c.KafkaBrokers},
		{"TEMPORAL_ADDRESS", "temporal-address", "127.0.0.1:7233", "Temporal frontend address", &c.TemporalAddress},
		{"TEMPORAL_NAMESPACE", "temporal-namespace", "default", "Temporal namespace", &c.TemporalNamespace},
		{"LETHE_KAFKA_TLS", "kafka-tls", "", "true or false: TLS to the Kafka brokers (implied by any LETHE_KAFKA_TLS_* file or name)", &c.KafkaTLS},
		{"LETHE_KAFKA_TLS_CA", "kafka-tls-ca", "", "PEM file of the CAs of the Kafka brokers (default: the system's)", &c.KafkaTLSCA},
		{"LETHE_KAFKA_TLS_CERT", "kafka-tls-cert", "", "PEM client certificate for Kafka mutual TLS", &c.KafkaTLSCert},
		{"LETHE_KAFKA_TLS_KEY", "kafka-tls-key", "", "PEM private key of LETHE_KAFKA_TLS_CERT", &c.KafkaTLSKey},
		{"LETHE_KAFKA_TLS_SERVER_NAME", "kafka-tls-server-name", "", "name the Kafka brokers' certificates carry, when not their address", &c.KafkaTLSServerName},
		{"LETHE_KAFKA_SASL_MECHANISM", "kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", &c.KafkaSASLMechanism},
		{"LETHE_KAFKA_SASL_USERNAME", "kafka-sasl-username", "", "Kafka SASL user", &c.KafkaSASLUsername},
		{"LETHE_KAFKA_SASL_PASSWORD", "kafka-sasl-password", "", "Kafka SASL password (prefer the environment or the _FILE variant to a flag)", &c.KafkaSASLPassword},
		{"LETHE_KAFKA_SASL_PASSWORD_FILE", "kafka-sasl-password-file", "", "file holding the Kafka SASL password (a mounted Secret)", &c.KafkaSASLPasswordFile},
		{"TEMPORAL_TLS", "temporal-tls", "", "true or false: TLS to the Temporal frontend (implied by any TEMPORAL_TLS_* or TEMPORAL_API_KEY)", &c.TemporalTLS},
		{"TEMPORAL_TLS_CA", "temporal-tls-ca", "", "PEM file of the CAs of the Temporal frontend (default: the system's)", &c.TemporalTLSCA},
		{"TEMPORAL_TLS_CERT", "temporal-tls-cert", "", "PEM client certificate for Temporal mutual TLS", &c.TemporalTLSCert},
		{"TEMPORAL_TLS_KEY", "temporal-tls-key", "", "PEM private key of TEMPORAL_TLS_CERT", &c.TemporalTLSKey},
		{"TEMPORAL_TLS_SERVER_NAME", "temporal-tls-server-name", "", "name the Temporal frontend's certificate carries, when not its address", &c.TemporalTLSServerName},
		{"TEMPORAL_API_KEY", "temporal-api-key", "", "Temporal Cloud API key, sent as a bearer credential over TLS", &c.TemporalAPIKey},
		{"LETHE_UI_ADDR", "ui-addr", "127.0.0.1:8233", "Temporal Web UI listen address (lethe dev)", &c.UIAddr},
		{"LETHE_HEALTH_ADDR", "health-addr", "127.0.0.1:8081", "health endpoints of the worker and relay", &c.HealthAddr},
		{"LETHE_METRICS_ADDR", "metrics-addr", "", "GET /metrics on its own listener (default: the worker and relay on LETHE_HEALTH_ADDR, the API beside its routes; a reference connector serves none)", &c.MetricsAddr},
		{"LETHE_SUBJECT_KEY", "subject-key", "", "hex HMAC key for identifier digests (64+ hex digits)", &c.SubjectKey},
		{"LETHE_CODEC_KEYS", "codec-keys", "", "Temporal payload encryption keys, comma-separated id:hexkey (64 hex digits), the first active", &c.CodecKeys},
		{"LETHE_CODEC_PLAINTEXT_BEFORE", "codec-plaintext-before", "", "RFC 3339 time encryption was turned on: workflows started before it may still read unencrypted payloads, later ones refuse them", &c.CodecPlainBefore},
		{"LETHE_CODEC_ADDR", "codec-addr", "127.0.0.1:8234", "codec endpoint listen address (lethe dev, lethe codec)", &c.CodecAddr},
		{"LETHE_CODEC_ORIGINS", "codec-origins", "", "comma-separated Temporal Web UI origins the codec endpoint answers (lethe codec)", &c.CodecOrigins},
		{"LETHE_SIGNING_KEY", "signing-key", "", "hex Ed25519 seed (64 hex digits) that signs certificates of erasure", &c.SigningKey},
		{"LETHE_SIGNING_KEYS_RETIRED", "signing-keys-retired", "", "comma-separated public keys (hex or base64) of former signing keys, still listed by GET /v1/keys", &c.SigningRetired},
		{"LETHE_RETENTION", "retention", "0", "how long finished requests keep their per-system rows before pruning (Go duration; 0 keeps them)", &c.Retention},
		{"LETHE_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", &c.LogLevel},
		{"LETHE_LOG_FORMAT", "log-format", "text", "text or json", &c.LogFormat},
		{"LETHE_DEADLINE", "deadline", "720h", "legal window of a request that names no policy", &c.Deadline},
		{"LETHE_TARGET_BEFORE", "target-before", "48h", "internal target this long before each deadline", &c.TargetBefore},
		{"LETHE_DEADLINE_POLICIES", "deadline-policies", "gdpr=720h,ccpa=1080h", "named windows requests may choose, name=duration,...", &c.DeadlinePolicies},
		{"LETHE_REMINDERS", "reminders", "50%,80%", "points of the window that escalate and re-dispatch to silent systems, or none", &c.Reminders},
		{"LETHE_SETTLE", "settle", "10s", "how long a new request settles before the ledger and the list columns follow each step (0: every step at once)", &c.Settle},
		{"LETHE_ESCALATION_WEBHOOK", "escalation-webhook", "", "URL that receives escalations as signed JSON (worker)", &c.EscalationURL},
		{"LETHE_ESCALATION_SECRET", "escalation-secret", "", "HMAC secret of the escalation webhook's Lethe-Signature header", &c.EscalationSecret},
		{"LETHE_AUTH", "auth", "on", "on, or off to serve the API to anyone (refused by the Helm chart; for a private test rig only)", &c.Auth},
		{"LETHE_OIDC_ISSUER", "oidc-issuer", "", "OIDC issuer URL whose JWT access tokens the API accepts (discovery + JWKS)", &c.OIDCIssuer},
		{"LETHE_OIDC_AUDIENCE", "oidc-audience", "", "the aud an OIDC access token must carry (required with LETHE_OIDC_ISSUER)", &c.OIDCAudience},
		{"LETHE_DEV_TOKEN", "dev-token", "", "lethe dev: the dev token's value (default: generated once and kept in the data folder)", &c.DevToken},
		{"LETHE_RATE_LIMIT", "rate-limit", "50", "API requests per second one principal may make (0: unlimited)", &c.RateLimit},
		{"LETHE_SYSTEM_KEY", "system-key", "", "hex master key (64+ hex digits) the secrets of systems' signing credentials derive from (api, worker, relay)", &c.SystemKey},
		{"LETHE_CREDENTIAL_OVERLAP", "credential-overlap", "24h", "how long a system's older credentials stay valid once a new one is issued", &c.CredentialOverlap},
		{"LETHE_RECONCILE_INTERVAL", "reconcile-interval", "5m", "how often the worker looks for open requests without a running workflow (0: never)", &c.ReconcileInterval},
		{"LETHE_RECONCILE_GRACE", "reconcile-grace", "10m", "how long a request must go unchanged in the ledger before the reconciler looks at it", &c.ReconcileGrace},
		{"LETHE_REQUIRE_SIGNATURES", "require-signatures", "false", "true: the relay and the API (pull mode) refuse unsigned confirmations of every system, even those without credentials", &c.RequireSignatures},
		{"LETHE_KAFKA_SESSION_TIMEOUT", "kafka-session-timeout", kafkasec.DefaultSessionTimeout.String(), "relay: how long the consumer group waits for a replica's heartbeat before giving its partitions to the others", &c.KafkaSessionTimeout},
		{"LETHE_KAFKA_HEARTBEAT_INTERVAL", "kafka-heartbeat-interval", kafkasec.DefaultHeartbeatInterval.String(), "relay: how often a replica heartbeats to its consumer group (at most a third of the session timeout)", &c.KafkaHeartbeat},
		{"LETHE_KAFKA_REBALANCE_TIMEOUT", "kafka-rebalance-timeout", kafkasec.DefaultRebalanceTimeout.String(), "relay: how long the consumer group waits for its replicas to rejoin when partitions move", &c.KafkaRebalanceTimeout},
		{"LETHE_WORKFLOW_TASK_TIMEOUT", "workflow-task-timeout", roles.DefaultWorkflowTaskTimeout.String(), "api: workflow task timeout of the workflows it starts, what a worker killed mid-task costs (at most 2m)", &c.WorkflowTaskTimeout},
		{"LETHE_STICKY_TIMEOUT", "sticky-timeout", roles.DefaultStickyTimeout.String(), "worker: how long a workflow's task waits for the worker that has it cached before any worker may take it", &c.StickyTimeout},
		{"LETHE_WORKER_STOP_TIMEOUT", "worker-stop-timeout", roles.DefaultWorkerStopTimeout.String(), "worker: how long a stopping worker lets its tasks in flight finish", &c.WorkerStopTimeout},
	}
}

// intSetting is a numeric configuration entry.
type intSetting struct {
	env, flag string
	def       int
	usage     string
	target    *int
}

func (c *config) intSettings() []intSetting {
	return []intSetting{
		{"LETHE_TOPIC_PARTITIONS", "topic-partitions", 3, "partitions of the topics Lethe creates", &c.TopicPartitions},
		{"LETHE_MAX_ATTEMPTS", "max-attempts", 5, "dispatches of one command before its system is failed", &c.MaxAttempts},
		{"LETHE_RATE_BURST", "rate-burst", 0, "API requests a principal may make at once (0: one second's worth of LETHE_RATE_LIMIT)", &c.RateBurst},
	}
}

// parseConfig reads the environment, then the role's flags.
func parseConfig(role string, args []string, env func(string) string, stderr io.Writer, extra func(*flag.FlagSet, *config)) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("lethe "+role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, s := range c.settings() {
		v := s.def
		if e := env(s.env); e != "" {
			v = e
		}
		fs.StringVar(s.target, s.flag, v, s.usage+" ($"+s.env+")")
	}
	for _, s := range c.intSettings() {
		v := s.def
		if e := env(s.env); e != "" {
			n, err := strconv.Atoi(e)
			if err != nil {
				return nil, fmt.Errorf("%s must be a whole number", s.env)
			}
			v = n
		}
		fs.IntVar(s.target, s.flag, v, s.usage+" ($"+s.env+")")
	}
	if extra != nil {
		extra(fs, c)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.DatabaseNamed = env("LETHE_DATABASE_URL") != ""
	fs.Visit(func(f *flag.Flag) { c.DatabaseNamed = c.DatabaseNamed || f.Name == "database-url" })
	if c.TopicPartitions < 1 {
		return nil, errors.New("LETHE_TOPIC_PARTITIONS must be at least 1")
	}
	if c.MaxAttempts < 1 {
		return nil, errors.New("LETHE_MAX_ATTEMPTS must be at least 1")
	}
	return c, nil
}

// brokers splits the broker list.
func (c *config) brokers() []string { return kafkax.SplitBrokers(c.KafkaBrokers) }

// digester builds the identifier digester from the subject key.
func (c *config) digester() (*digest.Digester, error) {
	if c.SubjectKey == "" {
		return nil, errors.New("LETHE_SUBJECT_KEY is not set: give a hex key of 64 or more digits (openssl rand -hex 32)")
	}
	key, err := digest.ParseKey(c.SubjectKey)
	if err != nil {
		return nil, fmt.Errorf("LETHE_SUBJECT_KEY: %w", err)
	}
	return digest.New(key)
}

// codecKeys parses LETHE_CODEC_KEYS; nil when it is empty.
func (c *config) codecKeys() (*codec.Keyring, error) {
	if c.CodecKeys == "" {
		return nil, nil
	}
	k, err := codec.ParseKeys(c.CodecKeys)
	if err != nil {
		return nil, fmt.Errorf("LETHE_CODEC_KEYS: %w", err)
	}
	return k, nil
}

// certSettings are the API's settings for certificates of erasure and
// retention.
type certSettings struct {
	// signer is nil when LETHE_SIGNING_KEY is empty.
	signer  *certificate.Signer
	retired []ed25519.PublicKey
	// retention is zero when requests are kept forever.
	retention time.Duration
}

// certSettings parses LETHE_SIGNING_KEY, LETHE_SIGNING_KEYS_RETIRED and
// LETHE_RETENTION. A retention without a signing key is refused: requests
// are pruned only once their certificate is issued, so none would ever be.
func (c *config) certSettings() (certSettings, error) {
	var out certSettings
	if c.SigningKey != "" {
		s, err := certificate.ParseSigningKey(c.SigningKey)
		if err != nil {
			return certSettings{}, fmt.Errorf("LETHE_SIGNING_KEY: %w", err)
		}
		out.signer = s
	}
	keys, err := certificate.ParsePublicKeys(c.SigningRetired)
	if err != nil {
		return certSettings{}, fmt.Errorf("LETHE_SIGNING_KEYS_RETIRED: %w", err)
	}
	out.retired = keys
	d, err := time.ParseDuration(c.Retention)
	if err != nil || d < 0 {
		return certSettings{}, fmt.Errorf("LETHE_RETENTION %q: want a Go duration such as 2160h, or 0 to keep requests forever", c.Retention)
	}
	out.retention = d
	if d > 0 && out.signer == nil {
		return certSettings{}, errors.New("LETHE_RETENTION needs LETHE_SIGNING_KEY: a request is pruned only once its certificate of erasure is issued")
	}
	return out, nil
}

// dataConverter is the payload converter of every Temporal client of the
// process, encrypting with LETHE_CODEC_KEYS. Without keys it encrypts
// nothing, which it warns about once, at start, but it still recognises
// encrypted payloads: a worker started without the keys then holds back the
// workflows it cannot read instead of failing them. With keys, workflows
// refuse unencrypted payloads unless they started before
// LETHE_CODEC_PLAINTEXT_BEFORE (see codec.DataConverter).
func (c *config) dataConverter(log *slog.Logger) (converter.DataConverter, error) {
	keys, err := c.codecKeys()
	if err != nil {
		return nil, err
	}
	var opts []codec.Option
	if c.CodecPlainBefore != "" {
		t, err := time.Parse(time.RFC3339, c.CodecPlainBefore)
		if err != nil {
			return nil, fmt.Errorf("LETHE_CODEC_PLAINTEXT_BEFORE %q: want an RFC 3339 time such as 2026-12-01T09:00:00Z", c.CodecPlainBefore)
		}
		opts = append(opts, codec.PlaintextBefore(t))
	}
	if keys == nil {
		log.Warn("LETHE_CODEC_KEYS is not set: Temporal stores workflow payloads, identifier values included, unencrypted")
	} else {
		log.Info("temporal payloads encrypted", "active_key_id", keys.ActiveID(), "key_ids", keys.IDs())
	}
	return codec.DataConverter(keys, opts...), nil
}

// logger builds the one logger of the process.
func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("LETHE_LOG_LEVEL %q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("LETHE_LOG_FORMAT %q: want text or json", c.LogFormat)
}

// osEnv reads the process environment.
func osEnv(k string) string { return os.Getenv(k) }

// deadlines reads the deadline settings into roles' terms. Malformed values
// are named in the error, which is the process's one line on stderr.
func (c *config) deadlines() (deadline, before time.Duration, policies map[string]time.Duration, reminders []float64, err error) {
	if deadline, err = positiveDuration("LETHE_DEADLINE", c.Deadline); err != nil {
		return
	}
	if before, err = positiveDuration("LETHE_TARGET_BEFORE", c.TargetBefore); err != nil {
		return
	}
	policies = map[string]time.Duration{}
	for _, p := range strings.Split(c.DeadlinePolicies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		name, window, ok := strings.Cut(p, "=")
		if !ok {
			return 0, 0, nil, nil, fmt.Errorf("LETHE_DEADLINE_POLICIES: %q is not name=duration", p)
		}
		d, perr := positiveDuration("LETHE_DEADLINE_POLICIES "+name, window)
		if perr != nil {
			return 0, 0, nil, nil, perr
		}
		policies[strings.TrimSpace(name)] = d
	}
	reminders = []float64{}
	if r := strings.TrimSpace(c.Reminders); r != "" && r != "none" {
		for _, p := range strings.Split(r, ",") {
			p = strings.TrimSpace(p)
			v, perr := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
			if perr != nil || !strings.HasSuffix(p, "%") || v <= 0 || v >= 100 {
				return 0, 0, nil, nil, fmt.Errorf("LETHE_REMINDERS: %q is not a percentage between 0%% and 100%%", p)
			}
			reminders = append(reminders, v/100)
		}
	}
	return deadline, before, policies, reminders, nil
}

// settle reads LETHE_SETTLE into workflows.Policy.Settle, where zero means
// the default and a negative value none: "0" here turns settling off.
func (c *config) settle() (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(c.Settle))
	switch {
	case err != nil || d < 0:
		return 0, fmt.Errorf("LETHE_SETTLE %q: want a duration such as 10s, or 0 for none", c.Settle)
	case d == 0:
		return -1, nil
	}
	return d, nil
}

func positiveDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as 720h", name, v)
	}
	return d, nil
}

// escalations builds the escalation webhook; nil when none is configured.
func (c *config) escalations() (activities.Notifier, error) {
	if c.EscalationURL == "" {
		return nil, nil
	}
	w, err := escalation.NewWebhook(c.EscalationURL, []byte(c.EscalationSecret), nil)
	if err != nil {
		return nil, fmt.Errorf("LETHE_ESCALATION_WEBHOOK: %w", err)
	}
	return w, nil
}

// signing reads LETHE_SYSTEM_KEY, LETHE_CREDENTIAL_OVERLAP and
// LETHE_REQUIRE_SIGNATURES. The master key is nil when it is not set: no
// credential can then be issued, signed with or checked.
func (c *config) signing() (master *credential.Master, overlap time.Duration, require bool, err error) {
	if c.SystemKey != "" {
		key, err := credential.ParseMasterKey(c.SystemKey)
		if err != nil {
			return nil, 0, false, fmt.Errorf("LETHE_SYSTEM_KEY: %w", err)
		}
		if master, err = credential.New(key); err != nil {
			return nil, 0, false, fmt.Errorf("LETHE_SYSTEM_KEY: %w", err)
		}
	}
	if overlap, err = positiveDuration("LETHE_CREDENTIAL_OVERLAP", c.CredentialOverlap); err != nil {
		return nil, 0, false, err
	}
	if require, err = strconv.ParseBool(strings.TrimSpace(c.RequireSignatures)); err != nil {
		return nil, 0, false, fmt.Errorf("LETHE_REQUIRE_SIGNATURES %q: want true or false", c.RequireSignatures)
	}
	return master, overlap, require, nil
}

// reconcile reads LETHE_RECONCILE_INTERVAL and LETHE_RECONCILE_GRACE; an
// interval of 0 turns the reconciler off.
func (c *config) reconcile() (roles.Reconcile, error) {
	interval, err := time.ParseDuration(strings.TrimSpace(c.ReconcileInterval))
	if err != nil || interval < 0 {
		return roles.Reconcile{}, fmt.Errorf("LETHE_RECONCILE_INTERVAL %q: want a duration such as 5m, or 0 to turn the reconciler off", c.ReconcileInterval)
	}
	grace, err := positiveDuration("LETHE_RECONCILE_GRACE", c.ReconcileGrace)
	if err != nil {
		return roles.Reconcile{}, err
	}
	return roles.Reconcile{Interval: interval, Grace: grace, Off: interval == 0}, nil
}

// failover reads the fail-over settings: positive Go durations, the
// heartbeat at most a third of the session, and a workflow task timeout
// Temporal accepts.
func (c *config) failover() (roles.Failover, error) {
	var f roles.Failover
	for _, s := range []struct {
		env, value string
		target     *time.Duration
	}{
		{"LETHE_KAFKA_SESSION_TIMEOUT", c.KafkaSessionTimeout, &f.KafkaGroup.Session},
		{"LETHE_KAFKA_HEARTBEAT_INTERVAL", c.KafkaHeartbeat, &f.KafkaGroup.Heartbeat},
		{"LETHE_KAFKA_REBALANCE_TIMEOUT", c.KafkaRebalanceTimeout, &f.KafkaGroup.Rebalance},
		{"LETHE_WORKFLOW_TASK_TIMEOUT", c.WorkflowTaskTimeout, &f.WorkflowTaskTimeout},
		{"LETHE_STICKY_TIMEOUT", c.StickyTimeout, &f.StickyTimeout},
		{"LETHE_WORKER_STOP_TIMEOUT", c.WorkerStopTimeout, &f.StopTimeout},
	} {
		d, err := positiveDuration(s.env, s.value)
		if err != nil {
			return roles.Failover{}, err
		}
		*s.target = d
	}
	g := f.KafkaGroup
	switch {
	case g.Session < time.Second:
		return roles.Failover{}, fmt.Errorf("LETHE_KAFKA_SESSION_TIMEOUT %q: want at least 1s (brokers usually refuse less than 6s)", c.KafkaSessionTimeout)
	case 3*g.Heartbeat > g.Session:
		return roles.Failover{}, fmt.Errorf("LETHE_KAFKA_HEARTBEAT_INTERVAL %q is more than a third of LETHE_KAFKA_SESSION_TIMEOUT %q: a live relay could be evicted between two heartbeats", c.KafkaHeartbeat, c.KafkaSessionTimeout)
	}
	if err := f.Validate(); err != nil {
		return roles.Failover{}, fmt.Errorf("LETHE_WORKFLOW_TASK_TIMEOUT %q: %w", c.WorkflowTaskTimeout, err)
	}
	return f, nil
}

// openStore connects to LETHE_DATABASE_URL, for the commands that read or
// write the registry directly (migrate, token, audit, codec).
func (c *config) openStore(ctx context.Context) (*registry.Store, error) {
	store, err := registry.Open(ctx, c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return store, nil
}
