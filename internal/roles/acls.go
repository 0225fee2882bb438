package roles

import (
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
)

// LetheKafkaACLs are the only rights Lethe's own principal (one SASL user
// shared by the API, the worker and the relay) needs on a cluster with
// ACLs: create and write every topic under wire.TopicPrefix (the command
// topics the API creates as systems register, their dead-letter topics and
// the confirmations' dead-letter topic), and read the confirmations with
// the relay's consumer group. It cannot read any command. docs/security.md
// lists the same rules as kafka-acls.sh lines; a test keeps them in step.
func LetheKafkaACLs(user string) []kafkasec.ACL {
	p := "User:" + user
	return []kafkasec.ACL{
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: wire.TopicPrefix, Prefixed: true, Operation: "Create"},
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: wire.TopicPrefix, Prefixed: true, Operation: "Write"},
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: wire.ConfirmationsTopic, Operation: "Read"},
		{Principal: p, Resource: kafkasec.ResourceGroup, Name: relay.DefaultGroupID, Operation: "Read"},
	}
}

// ServiceKafkaACLs are the only rights the principal of the service
// registered as system needs, with its default command topic and the SDK's
// default consumer group: read its own command topic with its own group,
// write confirmations, and write its own command topic's dead-letter topic.
// It can neither read another system's commands nor write any command.
func ServiceKafkaACLs(user, system string) []kafkasec.ACL {
	p := "User:" + user
	topic := wire.DefaultTopic(system)
	return []kafkasec.ACL{
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: topic, Operation: "Read"},
		{Principal: p, Resource: kafkasec.ResourceGroup, Name: connectors.GroupPrefix + system, Operation: "Read"},
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: wire.ConfirmationsTopic, Operation: "Write"},
		{Principal: p, Resource: kafkasec.ResourceTopic, Name: wire.DLQTopic(topic), Operation: "Write"},
	}
}
