package kafkasec

import (
	"fmt"
	"strings"
)

// The resource types of an ACL, as kafka-acls.sh names them.
const (
	ResourceTopic = "topic"
	ResourceGroup = "group"
)

// ACL is one access rule of a Kafka cluster: Principal may perform
// Operation on the topic or group Name (every name starting with Name when
// Prefixed). Lethe states its least-privilege rules as values of this type
// (roles.KafkaACLs), so that the tests that apply them to a broker and the
// commands an operator runs (Command) come from one list.
type ACL struct {
	// Principal is "User:<name>", the SASL user name.
	Principal string
	// Resource is ResourceTopic or ResourceGroup.
	Resource string
	Name     string
	Prefixed bool
	// Operation is Kafka's name of it: Read, Write, Create, Describe.
	Operation string
}

// Command is the kafka-acls.sh line that adds a, for the bootstrap server
// and admin client properties named by the shell variables BOOTSTRAP and
// ADMIN_CONFIG.
func (a ACL) Command() string {
	var b strings.Builder
	fmt.Fprintf(&b, `kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal %s --operation %s --%s %s`,
		a.Principal, a.Operation, a.Resource, a.Name)
	if a.Prefixed {
		b.WriteString(" --resource-pattern-type prefixed")
	}
	return b.String()
}
