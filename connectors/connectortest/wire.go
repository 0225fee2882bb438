package connectortest

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/wire"
)

// WireConfig is what CheckWire needs to check a connector that is already
// running, written in any language, over the wire alone. `lethe
// conformance` fills it from its flags.
type WireConfig struct {
	// System is the system the connector runs as.
	System string
	// Topic is the system's command topic; default wire.DefaultTopic(System).
	Topic string
	// Brokers are the Kafka cluster's addresses the connector reads.
	Brokers []string
	// TLS and SASL secure the connections, as connectors.Config's do.
	TLS  *tls.Config
	SASL sasl.Mechanism
	// IdentifierType is the type of the test subjects' identifiers: one
	// the system erases by.
	IdentifierType string
	// Seed stores data for s in the service, as its users would, and
	// returns once the service holds it. A black box cannot be counted, so
	// what remains of a subject is asked of the connector: a fresh command
	// for it must be answered not_found. Nil: the checks that need data
	// fail, saying so.
	Seed func(ctx context.Context, s Subject) error
	// KeyID and Secret (hex) are the connector's signing credential: the
	// checks sign their commands with it and require signed
	// confirmations. Without it signed_messages fails, saying so.
	KeyID, Secret string
	// Timeout bounds each check; default DefaultTimeout.
	Timeout time.Duration
}

func (c WireConfig) validate() error {
	switch {
	case !wire.ValidSystemName(c.System):
		return fmt.Errorf("system %q is not a valid system name", c.System)
	case len(c.Brokers) == 0:
		return errors.New("no Kafka brokers given")
	case !wire.ValidIdentifierType(c.IdentifierType):
		return fmt.Errorf("identifier type %q is not a valid identifier type", c.IdentifierType)
	case (c.KeyID == "") != (c.Secret == ""):
		return errors.New("give the credential's key id and secret both, or neither")
	case c.Timeout < 0:
		return errors.New("the timeout is negative")
	}
	if c.Secret != "" {
		if b, err := hex.DecodeString(c.Secret); err != nil || len(b) == 0 {
			return errors.New("the credential's secret is not hex")
		}
	}
	return nil
}

// WireChecks are the checks CheckWire runs, in its order: those of the kit
// that need nothing but the wire.
var WireChecks = []string{CheckEraseLeavesNothing, CheckRepeatedCommand, CheckUnknownSubject, CheckDryRun,
	CheckUnknownType, CheckMalformed, CheckSignedMessages}

// CheckWire runs WireChecks against the connector of cfg.System, already
// running, and returns one Result per check in that order; it runs the
// kit's checks, worded alike. Commands go to the system's topic with random
// ids; confirmations and dead letters are read without a consumer group, so
// nothing is taken from Lethe's relay (which rejects, and audits, the
// confirmations of commands it did not issue). A configuration or connection
// problem is one Result named CheckConfig or CheckSetup.
func CheckWire(ctx context.Context, cfg WireConfig) []Result {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Topic == "" {
		cfg.Topic = wire.DefaultTopic(cfg.System)
	}
	if err := cfg.validate(); err != nil {
		return []Result{{Check: CheckConfig, Problem: err.Error()}}
	}
	b, err := startBlackBox(ctx, cfg)
	if err != nil {
		return []Result{{Check: CheckSetup, Problem: err.Error()}}
	}
	defer b.close()
	checks := blackBoxChecks(WireChecks, checkMalformed)
	k := &checker{t: b, timeout: cfg.Timeout}
	return k.runAll(ctx, checks)
}

// blackBox is the target of CheckWire: a connector reached over the wire
// alone, through one session on its command topic.
type blackBox struct {
	cfg  WireConfig
	sec  kafkasec.Security
	l    *link
	sess *wireSession
}

var (
	_ target  = (*blackBox)(nil)
	_ session = (*wireSession)(nil)
)

func startBlackBox(ctx context.Context, cfg WireConfig) (_ *blackBox, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	b := &blackBox{cfg: cfg, sec: kafkasec.New(cfg.TLS, cfg.SASL)}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.l, err = dial(ctx, cfg.Brokers, b.sec, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	var secret []byte
	if cfg.Secret != "" {
		secret, _ = hex.DecodeString(cfg.Secret) // checked by validate
	}
	ks, err := b.l.session(ctx, cfg.Topic, cfg.KeyID, secret)
	if err != nil {
		return nil, err
	}
	b.sess = &wireSession{kafkaSession: ks, timeout: cfg.Timeout}
	return b, nil
}

func (b *blackBox) close() {
	if b.sess != nil {
		b.sess.kafkaSession.close()
	}
	if b.l != nil {
		b.l.close()
	}
	b.sec.Close()
}

func (b *blackBox) system() string { return b.cfg.System }

// newSubject is one identifier of the configured type, with a value no
// service holds yet.
func (b *blackBox) newSubject() Subject {
	return Subject{Identifiers: []wire.Identifier{{Type: b.cfg.IdentifierType, Value: "lethe-conformance-" + uuid.NewString()}}}
}

// errNoSeed is the failure of a check that needs data without a way to
// store it.
var errNoSeed = errors.New("this check needs a subject the service holds data for, and no seed command was given: pass --seed CMD to lethe conformance (WireConfig.Seed), a command that stores data for $LETHE_SEED_TYPE / $LETHE_SEED_VALUE in the service and exits 0")

func (b *blackBox) seed(ctx context.Context, s Subject) error {
	if b.cfg.Seed == nil {
		return errNoSeed
	}
	_, err := call(ctx, "Seed", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, b.cfg.Seed(ctx, s)
	})
	return err
}

// count cannot look into a black box: the checks ask the connector.
func (b *blackBox) count(context.Context, Subject) (int64, bool, error) { return 0, false, nil }

func (b *blackBox) open(_ context.Context, signed bool) (session, error) {
	if signed && b.sess.secret == nil {
		return nil, errors.New("this check needs the connector's signing credential, and none was given: pass --key-id and --secret (or LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET), the credential the connector runs with; a connector without one accepts forged commands")
	}
	return b.sess, nil
}

// wireSession is the one session of a black-box run, shared by its checks.
type wireSession struct {
	*kafkaSession
	timeout time.Duration
}

func (s *wireSession) await(ctx context.Context, commandID string, n int) (wire.Confirmation, error) {
	conf, err := s.confirmation(ctx, commandID, n, nil)
	if se := (*signatureError)(nil); err == nil || errors.As(err, &se) {
		return conf, err
	}
	return wire.Confirmation{}, fmt.Errorf("no confirmation within %s of a command sent to %s: the connector must read its system's topic, answer every command with a confirmation on %s and commit only then",
		s.timeout, s.topic, wire.ConfirmationsTopic)
}

func (s *wireSession) calls(string) (int, bool) { return 0, false }

func (s *wireSession) cause(string) string { return "" }

// close leaves the shared session open for the next check; the run closes
// it at its end.
func (s *wireSession) close() {}

// blackBoxChecks picks the checks names lists, in order, from those a
// running connector can be put through; malformed is the transport's own
// check of a command the connector cannot decode.
func blackBoxChecks(names []string, malformed func(context.Context, *checker) error) []check {
	byName := map[string]func(context.Context, *checker) error{
		CheckEraseLeavesNothing: checkEraseLeavesNothing,
		CheckRepeatedCommand:    checkRepeatedCommand,
		CheckUnknownSubject:     checkUnknownSubject,
		CheckDryRun:             checkDryRun,
		CheckUnknownType:        checkUnknownType,
		CheckMalformed:          malformed,
		CheckSignedMessages:     checkSignedMessages,
	}
	checks := make([]check, len(names))
	for i, name := range names {
		checks[i] = check{name, byName[name]}
	}
	return checks
}
