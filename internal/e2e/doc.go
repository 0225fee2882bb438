// Package e2e drives Lethe end to end, through its public HTTP API only, on
// real components: PostgreSQL, a Temporal server and a Kafka-protocol broker,
// with services erasing real rows through the connector SDK. Its benchmarks
// measure the same path next to the raw components it stands on.
package e2e
