package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Config is the connector's configuration file: which system it answers for,
// where its database and broker are, and for each identifier type the SQL
// that erases (and reveals further identifiers of) a subject. The statements
// are the operator's, trusted like code; the identifier value only ever
// travels as the parameter $1.
type Config struct {
	// System is the service's name in Lethe's registry.
	System string `yaml:"system"`
	// Topic is where the system's commands arrive, when it was registered
	// with a topic of its own; default wire.DefaultTopic(System).
	Topic string `yaml:"topic"`
	// Brokers are the Kafka bootstrap addresses; when empty, Main takes
	// them from LETHE_KAFKA_BROKERS.
	Brokers []string `yaml:"brokers"`
	// DatabaseURLEnv names the environment variable holding the service's
	// PostgreSQL URL, so that the password stays out of the file.
	DatabaseURLEnv string `yaml:"database_url_env"`
	// DatabaseURL is the URL itself, for local use; exactly one of the two
	// is set.
	DatabaseURL string `yaml:"database_url"`
	// Kafka says how to reach a secured cluster; absent, the connections
	// are plain.
	Kafka connectors.KafkaSecurity `yaml:"kafka"`
	// Signing is the system's credential for signed commands and
	// confirmations; absent, the SDK reads LETHE_CONNECTOR_KEY_ID and
	// LETHE_CONNECTOR_SECRET, and without those nothing is signed.
	Signing *connectors.SigningCredential `yaml:"signing"`
	// Commands is where the connector records the commands it carried out.
	Commands Commands `yaml:"commands"`
	// Dedup, when set, shares the SDK's de-duplication store through the
	// service's database; absent, the SDK keeps it in memory.
	Dedup *Dedup `yaml:"dedup"`
	// Identifiers maps each identifier type the system erases by to its
	// statements. The keys are what the system declares as "identifiers" in
	// Lethe's registry.
	Identifiers map[string]Statements `yaml:"identifiers"`
}

// Commands configures the table, in the service's own database, where the
// connector records each command it carried out, in the same transaction as
// the erasure. A command delivered again (after a crash between erasing and
// confirming, or to another replica) is then answered with the recorded
// outcome instead of being run again. The table holds command ids,
// outcomes and counts, never an identifier value.
type Commands struct {
	// Table is the table's name, optionally schema-qualified; default
	// DefaultCommandsTable. New creates it when it is missing.
	Table string `yaml:"table"`
	// Retention is how long a record is kept (a Go duration, such as
	// 2160h); default DefaultCommandsRetention.
	Retention time.Duration `yaml:"retention"`
}

// Defaults of Commands.
const (
	DefaultCommandsTable = "lethe_connector_commands"
	// DefaultCommandsRetention is the SDK's dedup retention: Lethe no
	// longer re-dispatches a command after that, so its record answers
	// nothing.
	DefaultCommandsRetention = connectors.DedupRetention
)

func (c Commands) withDefaults() Commands {
	if c.Table == "" {
		c.Table = DefaultCommandsTable
	}
	if c.Retention == 0 {
		c.Retention = DefaultCommandsRetention
	}
	return c
}

func (c Commands) validate() error {
	switch {
	case c.Table != "" && !tableRe.MatchString(c.Table):
		return configError("commands.table %q is not a table name (lower-case letters, digits and _, optionally schema.table)", c.Table)
	case c.Retention < 0:
		return configError("commands.retention is negative")
	case c.Retention > 0 && c.Retention < time.Hour:
		return configError("commands.retention %s is shorter than an hour; Lethe re-dispatches over days", c.Retention)
	}
	return nil
}

// Dedup turns on the SDK's de-duplication store in the service's database
// (connectors.NewPostgresDedup) instead of its in-memory one. The commands
// table already keeps a redelivered command from being erased twice; this
// store adds that a redelivery is answered with the very confirmation sent
// before, derived identifiers included, even when the rows that revealed
// them are gone. For that it keeps those identifiers, which are personal
// data, for connectors.DedupRetention.
type Dedup struct {
	// Table is the store's table, optionally schema-qualified; default
	// connectors.DefaultDedupTable. The SDK creates it when it is missing.
	Table string `yaml:"table"`
}

func (d *Dedup) validate() error {
	if d != nil && d.Table != "" && !tableRe.MatchString(d.Table) {
		return configError("dedup.table %q is not a table name (lower-case letters, digits and _, optionally schema.table)", d.Table)
	}
	return nil
}

// Statements is what the connector runs for one identifier type, each
// statement with the identifier's value as its only parameter, $1.
type Statements struct {
	// Erase are DELETE statements, or UPDATE statements that anonymise the
	// columns kept for accounting. An anonymising UPDATE should match only
	// rows not yet anonymised (WHERE … AND email IS NOT NULL), so that a
	// later request for the same subject counts nothing and reports
	// not_found.
	Erase []string `yaml:"erase"`
	// EraseBatch, optional, erase many subjects of a batch command at once,
	// one statement per table: each takes $1, an array of the identifier's
	// values (… WHERE user_id = ANY($1)), and returns the identifier's value
	// of each row it deletes or updates (RETURNING user_id), which is how
	// records are counted per subject. When set, batch commands run these
	// instead of Erase; without them, Erase runs for each subject of the
	// batch, in one transaction all the same.
	EraseBatch []string `yaml:"erase_batch"`
	// Reveal are queries run before any erasure that find further
	// identifiers of the same subject, which Lethe then sends to the
	// systems that erase by them.
	Reveal []Reveal `yaml:"reveal"`
}

// Reveal is one query that finds identifiers of another type for a subject.
type Reveal struct {
	// Type is the identifier type of the values the query returns; the
	// system declares it as "produces" in Lethe's registry.
	Type string `yaml:"type"`
	// Query is a SELECT (or WITH … SELECT) returning one column.
	Query string `yaml:"query"`
}

// ErrConfig is wrapped by every error of LoadConfig, ParseConfig and
// Config.Validate, so that a caller can tell a bad file from a database that
// is down.
var ErrConfig = errors.New("postgres connector: config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a configuration. Decoding is strict: an
// unknown key (a misspelt "erase" would otherwise silently erase nothing) or
// a second YAML document is an error.
func ParseConfig(b []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, configError("the file is empty")
		}
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return Config{}, configError("more than one YAML document")
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

var (
	// typeRe is the contract's rule for identifier types.
	typeRe  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	tableRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$`)
	// topicRe is Kafka's rule for topic names.
	topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

// Validate reports the first problem of c that can be seen without the
// database: names, the shape of the file, and each statement's leading
// keyword. New checks the statements against the database itself.
func (c Config) Validate() error {
	switch {
	case c.System == "":
		return configError("system is missing")
	case !wire.ValidSystemName(c.System):
		return configError("system %q is not a valid system name (lower-case letters, digits, - and _)", c.System)
	case c.Topic != "" && !topicRe.MatchString(c.Topic):
		return configError("topic %q is not a valid Kafka topic name", c.Topic)
	case c.DatabaseURL == "" && c.DatabaseURLEnv == "":
		return configError("database_url_env (or database_url) is missing")
	case c.DatabaseURL != "" && c.DatabaseURLEnv != "":
		return configError("database_url and database_url_env are both set; keep one")
	case c.DatabaseURLEnv != "" && !connectors.ValidEnvName(c.DatabaseURLEnv):
		return configError("database_url_env %q is not an environment variable name", c.DatabaseURLEnv)
	case len(c.Identifiers) == 0:
		return configError("identifiers is empty: name at least one identifier type and its statements")
	}
	if err := c.Kafka.Validate(); err != nil {
		return configError("%s", err)
	}
	if err := c.Signing.Validate(); err != nil {
		return configError("%s", err)
	}
	if err := c.Commands.validate(); err != nil {
		return err
	}
	if err := c.Dedup.validate(); err != nil {
		return err
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return configError("brokers[%d] is empty", i)
		}
	}
	for _, idType := range c.types() {
		if err := c.Identifiers[idType].validate(idType); err != nil {
			return err
		}
	}
	return nil
}

func (s Statements) validate(idType string) error {
	if !typeRe.MatchString(idType) {
		return configError("identifiers: %q is not a valid identifier type (lower-case letters, digits and _, starting with a letter)", idType)
	}
	if len(s.EraseBatch) > 0 && len(s.Erase) == 0 {
		return configError("identifiers.%s has erase_batch statements but no erase statements for single commands", idType)
	}
	if len(s.Erase) == 0 && len(s.Reveal) == 0 {
		return configError("identifiers.%s has neither erase statements nor reveal queries", idType)
	}
	for i, stmt := range s.Erase {
		if err := checkKeyword(stmt, eraseKeywords); err != nil {
			return configError("%s: %v", eraseName(idType, i), err)
		}
	}
	for i, stmt := range s.EraseBatch {
		if err := checkKeyword(stmt, eraseKeywords); err != nil {
			return configError("%s: %v", eraseBatchName(idType, i), err)
		}
	}
	for i, r := range s.Reveal {
		switch {
		case r.Type == "":
			return configError("%s: type is missing", revealName(idType, i))
		case !typeRe.MatchString(r.Type):
			return configError("%s: type %q is not a valid identifier type", revealName(idType, i), r.Type)
		}
		if err := checkKeyword(r.Query, revealKeywords); err != nil {
			return configError("%s: %v", revealName(idType, i), err)
		}
	}
	return nil
}

// types returns the configured identifier types in order, so that
// validation and erasure run in the same order on every start.
func (c Config) types() []string {
	types := make([]string, 0, len(c.Identifiers))
	for t := range c.Identifiers {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// IdentifierTypes returns the types the system erases by: what it must
// declare as "identifiers" when registered with Lethe.
func (c Config) IdentifierTypes() []string { return c.types() }

// ProducedTypes returns the types the reveal queries find: what the system
// must declare as "produces" when registered with Lethe.
func (c Config) ProducedTypes() []string {
	seen := make(map[string]bool)
	var out []string
	for _, s := range c.Identifiers {
		for _, r := range s.Reveal {
			if !seen[r.Type] {
				seen[r.Type] = true
				out = append(out, r.Type)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Names of statements in errors, in the file's own terms so an operator finds
// the line; statement indexes count from 0 like YAML paths.
func eraseName(idType string, i int) string {
	return fmt.Sprintf("identifiers.%s.erase[%d]", idType, i)
}
func eraseBatchName(idType string, i int) string {
	return fmt.Sprintf("identifiers.%s.erase_batch[%d]", idType, i)
}
func revealName(idType string, i int) string {
	return fmt.Sprintf("identifiers.%s.reveal[%d]", idType, i)
}

var (
	eraseKeywords  = []string{"DELETE", "UPDATE", "WITH"}
	revealKeywords = []string{"SELECT", "WITH"}
)

// checkKeyword rejects a statement whose first keyword is not one of allowed.
// It catches the obvious mistakes (an INSERT to erase, a DELETE to reveal)
// with a clear message before the database is asked; the authoritative
// checks, which see through WITH, are New's.
func checkKeyword(stmt string, allowed []string) error {
	kw := firstKeyword(stmt)
	if kw == "" {
		return errors.New("the statement is empty")
	}
	for _, a := range allowed {
		if kw == a {
			return nil
		}
	}
	return fmt.Errorf("the statement starts with %s; it must start with %s", kw, strings.Join(allowed, ", "))
}

// firstKeyword returns the first word of stmt in upper case, skipping
// white space, comments and opening parentheses.
func firstKeyword(stmt string) string {
	s := stmt
	for {
		s = strings.TrimLeft(s, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(s, "--"):
			end := strings.IndexByte(s, '\n')
			if end < 0 {
				return ""
			}
			s = s[end+1:]
		case strings.HasPrefix(s, "/*"):
			s = skipBlockComment(s)
		default:
			end := strings.IndexFunc(s, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
			})
			if end < 0 {
				end = len(s)
			}
			return strings.ToUpper(s[:end])
		}
	}
}

// skipBlockComment returns s after the block comment it starts with;
// PostgreSQL's block comments nest.
func skipBlockComment(s string) string {
	depth := 0
	for i := 0; i+1 < len(s); i++ {
		switch s[i : i+2] {
		case "/*":
			depth++
			i++
		case "*/":
			depth--
			i++
			if depth == 0 {
				return s[i+1:]
			}
		}
	}
	return ""
}
