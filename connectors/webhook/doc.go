// Package webhook is the reference connector for services that cannot run Go
// or Kafka: it reads a system's erasure commands from Kafka, forwards each
// one to an HTTP endpoint of the service as a signed POST, maps the answer to
// an outcome and sends the confirmation back to Lethe. It runs as
// `lethe connector webhook --config FILE` and needs no code from the service
// team beyond the endpoint. The package also ships the receiving side for Go
// services: Verifier checks the signature, the timestamp window and replays.
//
// # Configuration
//
// A YAML file; unknown keys are an error, so a typo fails at start:
//
//	system: crm                          # the system's name in Lethe's registry (required)
//	url: https://crm.internal/lethe/erase # the endpoint (required; http or https, no user:password)
//	secret_env: LETHE_WEBHOOK_SECRET     # environment variable holding the shared secret (required)
//	brokers: ["kafka-1:9092"]            # optional; default $LETHE_KAFKA_BROKERS, then 127.0.0.1:9092
//	topic: lethe.erasure.crm             # optional; default lethe.erasure.<system>
//	timeout: 10s                         # per HTTP attempt; default 10s
//	retries:
//	  max_attempts: 4                    # HTTP attempts per command, 1 to 20; default 4
//	  initial: 500ms                     # first backoff; default 500ms
//	  max: 10s                           # backoff cap; default 10s
//	headers:                             # optional extra request headers (e.g. for a gateway)
//	  X-Team: crm
//	kafka:                               # optional; as in the postgres connector's file
//	  tls: true
//	  tls_ca_file: /etc/lethe/kafka-ca.pem
//	  sasl: {mechanism: SCRAM-SHA-512, username: crm, password_env: KAFKA_PASSWORD}
//
// The secret is any string of at least 32 bytes (for instance the output of
// `openssl rand -hex 32`), the same on both sides. It is read from the
// environment, never from the file, so the file can live in version control.
//
// # Request
//
// For each command the connector sends
//
//	POST <url>
//	Content-Type: application/json
//	Lethe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//	Lethe-Command-Id: <command_id>
//	Idempotency-Key: <command_id>
//
//	{
//	  "delivery_id": "9a0e…",
//	  "command_id": "0b5c…",
//	  "request_id": "6f1c…",
//	  "system": "crm",
//	  "attempt": 1,
//	  "identifiers": [{"type": "email", "value": "ada@example.com"}],
//	  "dry_run": false,
//	  "issued_at": "2026-11-25T10:00:00Z",
//	  "confirm_by": "2026-11-28T10:00:00Z"
//	}
//
// The signed string is the decimal timestamp, a full stop and the body's
// exact bytes. delivery_id is random for every HTTP attempt, so no two
// deliveries share a signature and the receiver can reject any signature it
// has seen before as a replay, even when the connector retries within the
// same second. attempt is Lethe's dispatch attempt, not the HTTP attempt.
//
// The endpoint must verify the signature with a constant-time comparison,
// reject a timestamp more than five minutes away from its clock and reject a
// signature it has already accepted (Verifier does all three). Delivery is at
// least once: the same command_id (also in Idempotency-Key) can arrive again,
// after a timeout, a restart or a re-dispatch by Lethe, and must be treated as
// the same command: erase nothing twice and answer the same outcome. With
// dry_run the endpoint changes nothing and reports what it would erase.
//
// # Response
//
// The endpoint answers 200 with a JSON body (1 MiB at most; unknown fields
// are an error):
//
//	{
//	  "outcome": "erased",              // erased | not_found | retained | failed
//	  "records": 3,                     // what was erased, or with dry_run what would be
//	  "detail": "",                     // for people; retained must name the legal basis
//	  "retryable": false,               // only with failed: ask Lethe to dispatch again later
//	  "derived_identifiers": [{"type": "stripe_customer_id", "value": "cus_123"}]
//	}
//
// detail travels to Lethe and its API: it must never contain identifier
// values. The connector maps every answer to a confirmation:
//
//	200 with a valid body          the body's outcome
//	200 with an invalid body       failed, not retryable, detail names the problem
//	                               (an unknown outcome, retained without detail, …)
//	404 with a not_found body      not_found
//	404 without one                failed, not retryable: a wrong url must never
//	                               read as "nothing held here"
//	202                            answered later (see Slow endpoints)
//	202 that cannot be followed    failed, not retryable
//	other 2xx, 3xx                 failed, not retryable (redirects are not followed)
//	408, 409, 425, 429, 5xx        retried (409 is the Idempotency-Key convention for
//	                               "the same key is still being processed")
//	401 with code replayed_signature  retried with a fresh delivery: a proxy or the HTTP
//	                               client resent a request the endpoint had already seen
//	other 4xx (400, 401, 403, 410, 422…)
//	                               failed, not retryable, detail
//	                               "endpoint rejected the command (HTTP 4xx)"
//	timeout, connection error      retried
//
// Retries wait a capped exponential backoff with jitter (from retries.initial
// doubling up to retries.max, or longer when a 429 or 503 says Retry-After,
// still capped), stop when the connector shuts down and are bounded by
// retries.max_attempts. When every attempt failed the connector reports an
// error to the SDK, which confirms failed and retryable so Lethe dispatches
// the command again later (the SDK's own handler retries are switched off,
// so max_attempts is the whole bound). Response bodies and identifier values
// are never logged; nor is the command id, which is the capability that makes
// a confirmation count. The request id is, to follow one erasure across
// systems.
//
// # Slow endpoints
//
// An endpoint that erases later answers 202 Accepted. Under connectors.Run
// the command is then deferred (connectors.Resumer): recorded in
// Config.Store, committed, and answered in the background, by polling the
// status URL the 202 names (Location, or the body's status_url; poll.*) or
// by the endpoint's signed callback (callback.*, CallbackHandler), until a
// final answer or confirm_by. The record holds the status URL, polls made
// and times, never an identifier; with connectors.NewPostgresDedup's store
// (store.* in the file) it survives restarts and replicas share it. The
// items of a batch command cannot be deferred: their status URL is polled
// within Erase. docs/connectors.md describes the status URL's rules, the
// backoff, the callback's body, header and answers, and the restarts.
//
// # Rejections by Verifier
//
// Verifier answers with Lethe's error shape,
// {"error": {"code": "…", "message": "…"}}: 401 with code missing_signature,
// invalid_signature, stale_signature or replayed_signature; 413 for a body
// over 1 MiB; 400 with code unreadable_body when the body cannot be read; 503
// with code too_many_signatures when its memory of recent signatures is full
// (the connector retries); 500 with code verifier_misconfigured when its
// secret is shorter than 32 bytes.
package webhook
