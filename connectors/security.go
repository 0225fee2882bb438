package connectors

import (
	"fmt"

	"github.com/segmentio/kafka-go/sasl"

	"github.com/lethe-dev/lethe/internal/kafkasec"
)

// The SASL mechanisms SASL knows, by the names Kafka gives them.
const (
	SASLPlain       = kafkasec.SASLPlain
	SASLSCRAMSHA256 = kafkasec.SASLSCRAMSHA256
	SASLSCRAMSHA512 = kafkasec.SASLSCRAMSHA512
)

// SASL returns the kafka-go mechanism named mechanism (PLAIN, SCRAM-SHA-256
// or SCRAM-SHA-512, in any case) for user and password, for Config.SASL. It
// exists so that a connector configured by a file, or by the environment,
// can name its mechanism as a string, the way Kafka's own tools do. PLAIN
// sends the password as it is: use it only together with Config.TLS.
// Errors never quote the password.
func SASL(mechanism, user, password string) (sasl.Mechanism, error) {
	m, err := kafkasec.SASL(mechanism, user, password)
	if err != nil {
		return nil, fmt.Errorf("connectors: %w", err)
	}
	return m, nil
}
