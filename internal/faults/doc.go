// Package faults injects the failures Lethe must survive without losing or
// repeating an erasure: a worker killed mid-fan-out, a relay killed between
// signalling and committing, a broker refusing produce and fetch, dropped
// PostgreSQL connections, a Temporal restart, a flood of forged, late and
// malformed confirmations, and a system that never confirms. Each test runs
// the real components (the lethe binary as child processes where a process
// must die, PostgreSQL, the embedded Temporal server and a Kafka-protocol
// broker), checks that its fault really happened, and then checks that every
// request reached its final state exactly once and that no system erased the
// same thing twice. docs/reliability.md says what each test proves.
package faults
