// Package e2e drives Lethe end to end, through its public HTTP API only, on
// real components: PostgreSQL, a Temporal server and a Kafka-protocol broker,
// with services erasing real rows through the connector SDK. Its scale
// checks fan one erasure out to 1,000 systems and send one system a burst of
// requests. Throughput next to the raw components is measured by `lethe
// bench` (package internal/bench), on the same wiring.
//
// LETHE_E2E_SECURE=1 runs every test on a broker that requires SASL/SCRAM
// and enforces ACLs, LETHE_E2E_SIGNED=1 with every system issued a signing
// credential and every confirmation required to be signed; `make
// e2e-secure` sets both.
package e2e
