#!/usr/bin/env bash
# Checks the Helm chart in helm/lethe without a cluster: lint, render with the
# main value combinations, and assert what the rendered manifests must hold
# (secure pod defaults, probes, the migration hook, secret handling) and what
# must fail to render; scripts/helm-check-monitoring.sh adds the checks of the
# ServiceMonitor, the alert rules and the dashboard. Run from the repository
# root:
#
#   scripts/helm-check.sh
#
# Helm is built from source with `go run` (no binary download); the first run
# compiles it, which takes minutes. It runs from a temporary directory so that
# it never reads or changes the project's go.mod.
set -euo pipefail

readonly HELM_MODULE="helm.sh/helm/v3/cmd/helm@v3.22.0"
# A helm built by `go run` lacks the link-time flags that set its default
# Kubernetes version (it would assume v1.20, older than the chart's
# kubeVersion), so every render names a current one.
readonly KUBE_VERSION="1.31.0"

if [[ ! -f helm/lethe/Chart.yaml ]]; then
	echo "helm-check: run from the repository root (helm/lethe/Chart.yaml not found)" >&2
	exit 2
fi
CHART="$(pwd)/helm/lethe"
readonly CHART
WORK="$(mktemp -d)"
readonly WORK
trap 'rm -rf "$WORK"' EXIT

helm() {
	(cd "$WORK" && go run "$HELM_MODULE" "$@")
}

# The values every render needs; the subject key is 64 hex digits, and so is
# the codec key.
readonly SUBJECT_KEY="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
readonly CODEC_KEY="k1:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
readonly REQUIRED=(
	--set temporal.address=temporal-frontend.temporal:7233
	--set 'kafka.brokers[0]=kafka-0.kafka:9092'
	--set 'kafka.brokers[1]=kafka-1.kafka:9092'
	--set-string postgres.url=postgres://lethe:secret@postgres:5432/lethe?sslmode=require
	--set-string subjectKey.value="$SUBJECT_KEY"
	--set-string codecKeys.value="$CODEC_KEY"
)
readonly EXISTING=(
	--set temporal.address=temporal-frontend.temporal:7233
	--set 'kafka.brokers[0]=kafka-0.kafka:9092'
	--set postgres.existingSecret=lethe-db
	--set postgres.existingSecretKey=url
	--set subjectKey.existingSecret=lethe-keys
	--set subjectKey.existingSecretKey=hmac
	--set codecKeys.existingSecret=lethe-codec
	--set codecKeys.existingSecretKey=keys
)
readonly INGRESS=(
	--set ingress.enabled=true
	--set ingress.className=nginx
	--set 'ingress.hosts[0].host=lethe.internal.example'
	--set 'ingress.hosts[0].paths[0].path=/'
	--set 'ingress.hosts[0].paths[0].pathType=Prefix'
	--set 'ingress.tls[0].secretName=lethe-tls'
	--set 'ingress.tls[0].hosts[0]=lethe.internal.example'
)

render() {
	helm template lethe "$CHART" --namespace lethe --kube-version "$KUBE_VERSION" "$@"
}

# fail prints why a check failed and makes it return non-zero.
fail() {
	echo "    $*" >&2
	return 1
}

# count prints how many lines of a file match an extended regexp.
count() {
	grep -cE -- "$2" "$1" || true
}

# want_count asserts that exactly n lines of a file match a regexp.
want_count() {
	local file=$1 want=$2 pattern=$3 got
	got=$(count "$file" "$pattern")
	[[ "$got" == "$want" ]] || fail "$(basename "$file"): want $want lines matching '$pattern', got $got"
}

# split_docs writes each document of a rendered stream to its own file.
split_docs() {
	mkdir -p "$2"
	awk -v dir="$2" '/^---$/ { n++; next } { print > sprintf("%s/%03d.yaml", dir, n) }' "$1"
}

# want_none asserts that no line of a file matches a regexp.
want_none() {
	local file=$1 pattern=$2 got
	got=$(count "$file" "$pattern")
	[[ "$got" == 0 ]] || fail "$(basename "$file"): want no line matching '$pattern', got $got"
}

check_lint() {
	helm lint --strict "$CHART" --kube-version "$KUBE_VERSION" "${REQUIRED[@]}" \
		--set api.podDisruptionBudget.enabled=true --set log.format=text >"$WORK/lint.txt" 2>&1 ||
		{ cat "$WORK/lint.txt" >&2; fail "helm lint (chart values) failed"; }
	helm lint --strict "$CHART" --kube-version "$KUBE_VERSION" "${EXISTING[@]}" "${INGRESS[@]}" >"$WORK/lint.txt" 2>&1 ||
		{ cat "$WORK/lint.txt" >&2; fail "helm lint (existing secrets, ingress) failed"; }
}

check_defaults() {
	local out="$WORK/defaults.yaml"
	render "${REQUIRED[@]}" >"$out" || fail "render with required values failed" || return 1
	# Three Deployments, the migration Job, the API Service.
	want_count "$out" 3 '^kind: Deployment$' || return 1
	want_count "$out" 1 '^kind: Job$' || return 1
	want_count "$out" 1 '^kind: Service$' || return 1
	want_count "$out" 1 '^kind: ServiceAccount$' || return 1
	want_none "$out" '^kind: (Ingress|PodDisruptionBudget)$' || return 1
	# Each workload, not just the total, carries the hardened security context;
	# each long-running one is probed and rolls when its settings change.
	local docs="$WORK/defaults.d" doc kind workloads=0
	split_docs "$out" "$docs"
	for doc in "$docs"/*.yaml; do
		kind=$(sed -n 's/^kind: //p' "$doc")
		[[ "$kind" == Deployment || "$kind" == Job ]] || continue
		workloads=$((workloads + 1))
		want_count "$doc" 1 '^      automountServiceAccountToken: false$' || return 1
		want_count "$doc" 2 '^ +runAsNonRoot: true$' || return 1
		want_count "$doc" 2 '^ +runAsUser: 65532$' || return 1
		want_count "$doc" 1 '^ +readOnlyRootFilesystem: true$' || return 1
		want_count "$doc" 1 '^ +allowPrivilegeEscalation: false$' || return 1
		want_count "$doc" 1 '^ +- ALL$' || return 1
		want_count "$doc" 2 '^ +type: RuntimeDefault$' || return 1
		want_count "$doc" 1 '^ +mountPath: /tmp$' || return 1
		want_count "$doc" 1 '^ +- name: LETHE_DATABASE_URL$' || return 1
		# Only the api and the worker digest identifiers (check_secret_scopes).
		if grep -qE 'args: \["(api|worker)"\]' "$doc"; then
			want_count "$doc" 1 '^ +- name: LETHE_SUBJECT_KEY$' || return 1
		else
			want_none "$doc" '^ +- name: LETHE_SUBJECT_KEY$' || return 1
		fi
		if [[ "$kind" == Job ]]; then
			want_none "$doc" 'Probe:$' || return 1
			continue
		fi
		want_count "$doc" 1 '^ +livenessProbe:$' || return 1
		want_count "$doc" 1 '^ +readinessProbe:$' || return 1
		want_count "$doc" 1 '^ +path: /healthz$' || return 1
		want_count "$doc" 1 '^ +path: /readyz$' || return 1
		want_count "$doc" 1 '^ +checksum/config: [0-9a-f]{64}$' || return 1
		want_count "$doc" 1 '^ +checksum/secret: [0-9a-f]{64}$' || return 1
	done
	[[ "$workloads" == 4 ]] || fail "want 4 workloads, got $workloads" || return 1
	# The API is probed on its own port, the worker and relay on healthPort.
	want_count "$out" 2 '^ +port: http$' || return 1
	want_count "$out" 4 '^ +port: health$' || return 1
	want_count "$out" 1 '^ +containerPort: 8080$' || return 1
	want_count "$out" 2 '^ +containerPort: 8081$' || return 1
	want_count "$out" 3 '^ +containerPort: 9090$' || return 1
	want_count "$out" 1 'args: \["api"\]' || return 1
	want_count "$out" 1 'args: \["worker"\]' || return 1
	want_count "$out" 1 'args: \["relay"\]' || return 1
	# Settings reach the pods through the ConfigMap and the Secret, each with
	# a copy for the migration hook.
	want_count "$out" 2 'LETHE_HTTP_ADDR: "0\.0\.0\.0:8080"' || return 1
	want_count "$out" 2 'LETHE_HEALTH_ADDR: "0\.0\.0\.0:8081"' || return 1
	want_count "$out" 2 'LETHE_KAFKA_BROKERS: "kafka-0\.kafka:9092,kafka-1\.kafka:9092"' || return 1
	want_count "$out" 2 'LETHE_SETTLE: "10s"' || return 1
	want_count "$out" 2 'TEMPORAL_ADDRESS: "temporal-frontend\.temporal:7233"' || return 1
	want_count "$out" 2 '^kind: Secret$' || return 1
	want_count "$out" 2 "^  subject-key: \"$(printf %s "$SUBJECT_KEY" | base64 -w0)\"$" || return 1
	want_count "$out" 4 'image: ghcr\.io/lethe-dev/lethe:'"$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$CHART/Chart.yaml")"'$' || return 1
}

check_migration_hook() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# The Job and its copies of the ConfigMap and Secret are hooks that run
	# before install and upgrade, the copies first.
	want_count "$out" 3 '^    helm\.sh/hook: pre-install,pre-upgrade$' || return 1
	want_count "$out" 3 '^    helm\.sh/hook-delete-policy: before-hook-creation,hook-succeeded$' || return 1
	want_count "$out" 2 '^    helm\.sh/hook-weight: "-10"$' || return 1
	want_count "$out" 1 '^    helm\.sh/hook-weight: "0"$' || return 1
	want_count "$out" 1 'args: \["migrate"\]' || return 1
	want_count "$out" 1 '^  backoffLimit: 3$' || return 1
	want_count "$out" 1 '^      restartPolicy: Never$' || return 1
	# Three hook objects, and the Job reads its own ConfigMap and, from its
	# own Secret, the database URL alone.
	want_count "$out" 5 '^ +name: lethe-migrate$' || return 1
	local off="$WORK/nomigrate.yaml"
	render "${REQUIRED[@]}" --set migrate.enabled=false >"$off" || fail "render with migrate.enabled=false failed" || return 1
	want_none "$off" 'helm\.sh/hook' || return 1
	want_none "$off" '^kind: Job$' || return 1
}

check_existing_secrets_and_ingress() {
	local out="$WORK/existing.yaml"
	render "${EXISTING[@]}" "${INGRESS[@]}" --set api.podDisruptionBudget.enabled=true \
		--set worker.podDisruptionBudget.enabled=true --set worker.podDisruptionBudget.minAvailable=50% >"$out" ||
		fail "render with existing secrets and ingress failed" || return 1
	# Every secret comes from outside, so the chart creates none; every pod
	# (the migration included) reads the database URL from the named Secret,
	# the api and the worker the subject key.
	want_none "$out" '^kind: Secret$' || return 1
	want_count "$out" 4 '^ +name: lethe-db$' || return 1
	want_count "$out" 4 '^ +key: url$' || return 1
	want_count "$out" 2 '^ +name: lethe-keys$' || return 1
	want_count "$out" 2 '^ +key: hmac$' || return 1
	want_count "$out" 1 '^kind: Ingress$' || return 1
	want_count "$out" 1 '^  ingressClassName: nginx$' || return 1
	want_count "$out" 1 '^    - host: "lethe\.internal\.example"$' || return 1
	want_count "$out" 1 '^ +secretName: lethe-tls$' || return 1
	want_count "$out" 2 '^kind: PodDisruptionBudget$' || return 1
	want_count "$out" 1 '^  minAvailable: 50%$' || return 1
	want_count "$out" 1 '^  maxUnavailable: 1$' || return 1
	# One secret outside, one given as a value: the chart's Secret holds only
	# the latter.
	local mixed="$WORK/mixed.yaml"
	render "${REQUIRED[@]}" --set postgres.existingSecret=lethe-db >"$mixed" ||
		fail "render with only postgres.existingSecret failed" || return 1
	want_count "$mixed" 2 '^kind: Secret$' || return 1
	want_none "$mixed" '^  database-url:' || return 1
	want_count "$mixed" 2 '^  subject-key:' || return 1
	want_count "$mixed" 4 '^ +name: lethe-db$' || return 1
	want_count "$mixed" 2 '^ +key: subject-key$' || return 1
}

check_checksum_rolls() {
	local a="$WORK/roll-a.yaml" b="$WORK/roll-b.yaml"
	render "${REQUIRED[@]}" >"$a" || fail "render failed" || return 1
	render "${REQUIRED[@]}" --set log.level=debug --set-string postgres.url=postgres://other@pg/lethe >"$b" ||
		fail "render failed" || return 1
	local ca cb sa sb
	ca=$(grep -m1 'checksum/config:' "$a") && cb=$(grep -m1 'checksum/config:' "$b") || fail "no checksum/config" || return 1
	sa=$(grep -m1 'checksum/secret:' "$a") && sb=$(grep -m1 'checksum/secret:' "$b") || fail "no checksum/secret" || return 1
	[[ "$ca" != "$cb" ]] || fail "checksum/config did not change with log.level" || return 1
	[[ "$sa" != "$sb" ]] || fail "checksum/secret did not change with postgres.url" || return 1
}

check_codec_keys() {
	# Two keys, the rotation case; --set needs the comma between them escaped.
	local keys="k2:$SUBJECT_KEY,k1:$SUBJECT_KEY" set_keys="k2:$SUBJECT_KEY\\,k1:$SUBJECT_KEY" out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# Turned off on purpose: no pod gets the variable and the Secret holds no
	# entry (check_payload_encryption).
	local clear="$WORK/codec-off.yaml"
	render "${REQUIRED[@]}" --set-string codecKeys.value= --set payloadEncryption.enabled=false >"$clear" ||
		fail "render with payloadEncryption.enabled=false failed" || return 1
	want_none "$clear" 'LETHE_CODEC_KEYS' || return 1
	want_none "$clear" '^  codec-keys:' || return 1
	# As a value: in the chart's Secret (and the hook's copy), read by the
	# api, worker and relay, not by the migration.
	local value="$WORK/codec-value.yaml"
	render "${REQUIRED[@]}" --set-string codecKeys.value="$set_keys" >"$value" ||
		fail "render with codecKeys.value failed" || return 1
	want_count "$value" 3 '^ +- name: LETHE_CODEC_KEYS$' || return 1
	want_count "$value" 3 '^ +key: codec-keys$' || return 1
	want_count "$value" 2 "^  codec-keys: \"$(printf %s "$keys" | base64 -w0)\"$" || return 1
	local a b
	a=$(grep -m1 'checksum/secret:' "$out") && b=$(grep -m1 'checksum/secret:' "$value") || fail "no checksum/secret" || return 1
	[[ "$a" != "$b" ]] || fail "checksum/secret did not change with codecKeys.value" || return 1
	# From an existing Secret (EXISTING names lethe-codec): with the other two
	# outside as well, the chart creates no Secret at all.
	local existing="$WORK/codec-existing.yaml"
	render "${EXISTING[@]}" >"$existing" ||
		fail "render with codecKeys.existingSecret failed" || return 1
	want_none "$existing" '^kind: Secret$' || return 1
	want_count "$existing" 3 '^ +- name: LETHE_CODEC_KEYS$' || return 1
	want_count "$existing" 3 '^ +name: lethe-codec$' || return 1
	want_count "$existing" 3 '^ +key: keys$' || return 1
	# A codec key given as a value alone still makes the chart own a Secret.
	local only="$WORK/codec-only.yaml"
	render "${EXISTING[@]}" --set codecKeys.existingSecret= --set-string codecKeys.value="$set_keys" >"$only" ||
		fail "render with existing secrets and codecKeys.value failed" || return 1
	want_count "$only" 2 '^kind: Secret$' || return 1
	want_none "$only" '^  (database-url|subject-key):' || return 1
	want_count "$only" 2 '^  codec-keys:' || return 1
}

check_certificates() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# By default nothing is pruned and no pod gets a signing key.
	want_count "$out" 2 '^  LETHE_RETENTION: "0"$' || return 1
	want_none "$out" 'LETHE_SIGNING_KEY' || return 1
	# The seed from an existing Secret reaches the api pods only; retention
	# and retired keys are plain settings.
	local signed="$WORK/certificates.yaml"
	render "${REQUIRED[@]}" --set certificates.existingSecret=lethe-signing --set certificates.existingSecretKey=seed \
		--set certificates.retention=2160h --set-string 'certificates.retiredKeys=aa\,bb' >"$signed" ||
		fail "render with certificates failed" || return 1
	want_count "$signed" 1 '^ +- name: LETHE_SIGNING_KEY$' || return 1
	want_count "$signed" 1 '^ +name: lethe-signing$' || return 1
	want_count "$signed" 1 '^ +key: seed$' || return 1
	local docs="$WORK/certificates.d" doc
	split_docs "$signed" "$docs"
	for doc in "$docs"/*.yaml; do
		if grep -q 'LETHE_SIGNING_KEY$' "$doc"; then
			want_count "$doc" 1 'args: \["api"\]' || return 1
		fi
	done
	want_count "$signed" 2 '^  LETHE_RETENTION: "2160h"$' || return 1
	want_count "$signed" 2 '^  LETHE_SIGNING_KEYS_RETIRED: "aa,bb"$' || return 1
	must_fail "a duration as retention" "/certificates/retention" "${REQUIRED[@]}" --set certificates.retention=90d || return 1
}

check_auth() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# Authentication is on in the ConfigMap and its migration copy; Lethe
	# tokens only by default, with each principal's rate.
	want_count "$out" 2 '^  LETHE_AUTH: "on"$' || return 1
	want_count "$out" 2 '^  LETHE_RATE_LIMIT: "50"$' || return 1
	want_none "$out" 'LETHE_OIDC_ISSUER' || return 1
	local oidc="$WORK/oidc.yaml"
	render "${REQUIRED[@]}" --set auth.oidc.issuer=https://sso.example.com/realms/acme \
		--set auth.oidc.audience=lethe-api --set auth.rateLimit=5 >"$oidc" ||
		fail "render with OIDC failed" || return 1
	want_count "$oidc" 2 '^  LETHE_OIDC_ISSUER: "https://sso.example.com/realms/acme"$' || return 1
	want_count "$oidc" 2 '^  LETHE_OIDC_AUDIENCE: "lethe-api"$' || return 1
	want_count "$oidc" 2 '^  LETHE_RATE_LIMIT: "5"$' || return 1
	must_fail "an OIDC audience" "auth.oidc.audience is required" "${REQUIRED[@]}" \
		--set auth.oidc.issuer=https://sso.example.com || return 1
	# No value turns authentication off, not even through extraEnv.
	local c
	for c in api worker relay migrate; do
		must_fail "authentication ($c.extraEnv)" "never deploys an API without authentication" "${REQUIRED[@]}" \
			--set "$c.extraEnv[0].name=LETHE_AUTH" --set "$c.extraEnv[0].value=off" || return 1
	done
	must_fail "a known auth setting" "additional properties 'enabled'" "${REQUIRED[@]}" --set auth.enabled=false || return 1
}

check_credentials() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# By default no pod gets a system key, and signatures are not required.
	want_none "$out" 'LETHE_SYSTEM_KEY' || return 1
	want_count "$out" 2 '^  LETHE_CREDENTIAL_OVERLAP: "24h"$' || return 1
	want_count "$out" 2 '^  LETHE_REQUIRE_SIGNATURES: "false"$' || return 1
	# The master key from an existing Secret reaches the api, worker and
	# relay, not the migration.
	local keyed="$WORK/credentials.yaml"
	render "${REQUIRED[@]}" --set credentials.existingSecret=lethe-system --set credentials.existingSecretKey=master \
		--set credentials.overlap=2h --set credentials.requireSignatures=true >"$keyed" ||
		fail "render with credentials failed" || return 1
	want_count "$keyed" 3 '^ +- name: LETHE_SYSTEM_KEY$' || return 1
	want_count "$keyed" 3 '^ +name: lethe-system$' || return 1
	want_count "$keyed" 2 '^  LETHE_CREDENTIAL_OVERLAP: "2h"$' || return 1
	want_count "$keyed" 2 '^  LETHE_REQUIRE_SIGNATURES: "true"$' || return 1
	must_fail "a duration as overlap" "/credentials/overlap" "${REQUIRED[@]}" --set credentials.overlap=1d || return 1
}

check_transport() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# By default the pods connect in plaintext: no transport setting, no mount.
	want_none "$out" 'LETHE_KAFKA_(TLS|SASL)|TEMPORAL_(TLS|API_KEY)' || return 1
	want_none "$out" '/etc/lethe/' || return 1
	# Kafka mutual TLS and SCRAM, Temporal TLS and an API key, all from
	# existing Secrets: the api, worker and relay get them, the migration
	# (which reaches neither Kafka nor Temporal) does not.
	local secured="$WORK/transport.yaml"
	render "${REQUIRED[@]}" --set kafka.tls.enabled=true --set kafka.tls.existingSecret=kafka-certs \
		--set kafka.tls.certKey=tls.crt --set kafka.tls.keyKey=tls.key --set kafka.tls.serverName=kafka.internal \
		--set kafka.sasl.mechanism=SCRAM-SHA-512 --set kafka.sasl.username=lethe --set kafka.sasl.existingSecret=kafka-login \
		--set temporal.tls.enabled=true --set temporal.tls.existingSecret=temporal-certs \
		--set temporal.tls.certKey=tls.crt --set temporal.tls.keyKey=tls.key \
		--set temporal.apiKey.existingSecret=temporal-cloud >"$secured" || fail "render with transport security failed" || return 1
	local name
	for name in LETHE_KAFKA_TLS LETHE_KAFKA_TLS_CA LETHE_KAFKA_TLS_CERT LETHE_KAFKA_TLS_KEY LETHE_KAFKA_TLS_SERVER_NAME \
		LETHE_KAFKA_SASL_MECHANISM LETHE_KAFKA_SASL_USERNAME LETHE_KAFKA_SASL_PASSWORD \
		TEMPORAL_TLS TEMPORAL_TLS_CA TEMPORAL_TLS_CERT TEMPORAL_TLS_KEY TEMPORAL_API_KEY; do
		want_count "$secured" 3 "^ +- name: $name\$" || return 1
	done
	want_count "$secured" 3 '^ +value: /etc/lethe/kafka-tls/cert\.pem$' || return 1
	want_count "$secured" 3 '^ +value: /etc/lethe/temporal-tls/ca\.pem$' || return 1
	want_count "$secured" 3 '^ +name: kafka-login$' || return 1
	want_count "$secured" 3 '^ +name: temporal-cloud$' || return 1
	want_count "$secured" 3 '^ +secretName: kafka-certs$' || return 1
	want_count "$secured" 3 '^ +secretName: temporal-certs$' || return 1
	want_count "$secured" 3 '^ +mountPath: /etc/lethe/kafka-tls$' || return 1
	want_count "$secured" 3 '^ +mountPath: /etc/lethe/temporal-tls$' || return 1
	# The password and the API key are never values in the rendering.
	want_none "$secured" '^ +value: .*(password|api-key)' || return 1
	local docs="$WORK/transport.d" doc
	split_docs "$secured" "$docs"
	for doc in "$docs"/*.yaml; do
		if grep -q 'args: \["migrate"\]' "$doc"; then
			want_none "$doc" 'LETHE_KAFKA_|TEMPORAL_TLS|TEMPORAL_API_KEY|/etc/lethe/' || return 1
		fi
	done
	must_fail "a SASL password Secret" "kafka.sasl.mechanism needs" "${REQUIRED[@]}" \
		--set kafka.sasl.mechanism=PLAIN --set kafka.sasl.username=lethe || return 1
	must_fail "a client key with the certificate" "kafka.tls.certKey and kafka.tls.keyKey go together" "${REQUIRED[@]}" \
		--set kafka.tls.enabled=true --set kafka.tls.existingSecret=kafka-certs --set kafka.tls.certKey=tls.crt || return 1
	must_fail "a known SASL mechanism" "/kafka/sasl/mechanism" "${REQUIRED[@]}" --set kafka.sasl.mechanism=GSSAPI || return 1
}

# must_fail asserts that a render fails and says why in the given words.
must_fail() {
	local why=$1 message=$2
	shift 2
	if render "$@" >"$WORK/fail.out" 2>"$WORK/fail.err"; then
		fail "render succeeded without $why"
		return 1
	fi
	grep -qF -- "$message" "$WORK/fail.err" || {
		cat "$WORK/fail.err" >&2
		fail "render without $why failed without saying '$message'"
	}
}

check_required_settings_fail() {
	# Each render leaves out one required setting and keeps the others.
	local temporal=(--set temporal.address=temporal:7233)
	local kafka=(--set 'kafka.brokers[0]=kafka:9092')
	local db=(--set-string postgres.url=postgres://pg/lethe)
	local key=(--set-string subjectKey.value="$SUBJECT_KEY" --set-string codecKeys.value="$CODEC_KEY")
	must_fail "a database setting" "postgres.url is required" \
		"${temporal[@]}" "${kafka[@]}" "${key[@]}" || return 1
	must_fail "a database setting (migration disabled)" "postgres.url is required" \
		"${temporal[@]}" "${kafka[@]}" "${key[@]}" --set migrate.enabled=false || return 1
	must_fail "a subject key" "subjectKey.value is required" \
		"${temporal[@]}" "${kafka[@]}" "${db[@]}" || return 1
	must_fail "a Temporal address" "temporal.address is required" \
		"${kafka[@]}" "${db[@]}" "${key[@]}" || return 1
	must_fail "Kafka brokers" "kafka.brokers is required" \
		"${temporal[@]}" "${db[@]}" "${key[@]}" || return 1
	# With the missing one supplied, the same render succeeds.
	render "${temporal[@]}" "${kafka[@]}" "${db[@]}" "${key[@]}" >/dev/null ||
		fail "render with every required setting failed"
}

check_schema_rejects() {
	must_fail "a valid log format" "/log/format" "${REQUIRED[@]}" --set log.format=xml || return 1
	must_fail "a hex subject key" "/subjectKey/value" "${REQUIRED[@]}" --set-string subjectKey.value=not-hex || return 1
	must_fail "a long enough subject key" "/subjectKey/value" "${REQUIRED[@]}" --set-string subjectKey.value=abcd || return 1
	must_fail "an integer replica count" "/api/replicas" "${REQUIRED[@]}" --set-string api.replicas=two || return 1
	must_fail "a known service type" "/api/service/type" "${REQUIRED[@]}" --set api.service.type=Magic || return 1
	must_fail "known value names" "postgress" "${REQUIRED[@]}" --set postgress.url=x || return 1
	must_fail "codec keys as id:hexkey" "/codecKeys/value" "${REQUIRED[@]}" --set-string codecKeys.value="$SUBJECT_KEY" || return 1
	must_fail "64-digit codec keys" "/codecKeys/value" "${REQUIRED[@]}" --set-string codecKeys.value=k1:abcd || return 1
	must_fail "a duration as settle" "/settle" "${REQUIRED[@]}" --set settle=soon || return 1
}

check_payload_encryption() {
	# Without payload keys the chart refuses to render, and says what to set.
	local message
	for message in "codecKeys are required" "openssl rand -hex 32" "codecKeys.value=k1:<hex>" \
		"codecKeys.existingSecret" "payloadEncryption.enabled=false"; do
		must_fail "codec keys" "$message" "${REQUIRED[@]}" --set-string codecKeys.value= || return 1
	done
	# Turned off on purpose, it renders, without the variable.
	local off="$WORK/encryption-off.yaml"
	render "${REQUIRED[@]}" --set-string codecKeys.value= --set payloadEncryption.enabled=false >"$off" ||
		fail "render with payloadEncryption.enabled=false failed" || return 1
	want_count "$off" 3 '^kind: Deployment$' || return 1
	want_none "$off" 'LETHE_CODEC_KEYS' || return 1
	must_fail "a boolean payloadEncryption.enabled" "/payloadEncryption/enabled" "${REQUIRED[@]}" \
		--set-string payloadEncryption.enabled=no || return 1
	# The migration window for plaintext reaches the ConfigMap (and the
	# migration's copy of it); a value
	# that is not an RFC 3339 time is refused.
	local window="$WORK/plaintext-before.yaml"
	render "${REQUIRED[@]}" --set-string payloadEncryption.plaintextBefore=2026-12-03T09:00:00Z >"$window" ||
		fail "render with payloadEncryption.plaintextBefore failed" || return 1
	want_count "$window" 2 '^  LETHE_CODEC_PLAINTEXT_BEFORE: "2026-12-03T09:00:00Z"$' || return 1
	must_fail "an RFC 3339 plaintextBefore" "/payloadEncryption/plaintextBefore" "${REQUIRED[@]}" \
		--set-string payloadEncryption.plaintextBefore=yesterday || return 1
}

# policy_of writes to stdout the file of the rendered document of a kind and
# component, from a directory written by split_docs.
policy_of() {
	local dir=$1 kind=$2 component=$3 doc
	for doc in "$dir"/*.yaml; do
		if grep -qx "kind: $kind" "$doc" && grep -qx "  name: lethe-$component" "$doc"; then
			echo "$doc"
			return 0
		fi
	done
	fail "no $kind lethe-$component"
}

check_network_policies() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	want_count "$out" 3 '^kind: NetworkPolicy$' || return 1
	local docs="$WORK/netpol.d" c doc
	split_docs "$out" "$docs"
	for c in api worker relay; do
		doc=$(policy_of "$docs" NetworkPolicy "$c") || return 1
		# Each selects its own component's pods, and restricts ingress only.
		want_count "$doc" 1 "^      app\.kubernetes\.io/component: $c\$" || return 1
		want_count "$doc" 1 '^      app\.kubernetes\.io/instance: lethe$' || return 1
		want_count "$doc" 1 '^    - Ingress$' || return 1
		want_none "$doc" 'Egress' || return 1
		# By default every opened port admits the release's namespace alone:
		# the API's HTTP and metrics ports, the others' metrics port.
		want_none "$doc" 'namespaceSelector|ipBlock' || return 1
		want_count "$doc" 1 '^        - port: metrics$' || return 1
		if [[ "$c" == api ]]; then
			want_count "$doc" 2 '^        - port: [a-z]+$' || return 1
			want_count "$doc" 2 '^        - podSelector: \{\}$' || return 1
			want_count "$doc" 1 '^        - port: http$' || return 1
		else
			want_count "$doc" 1 '^        - port: [a-z]+$' || return 1
			want_count "$doc" 1 '^        - podSelector: \{\}$' || return 1
		fi
	done
	# Peers from values: the Ingress controller's namespace for the API, the
	# monitoring namespace for metrics, the nodes for the health port.
	local peers="$WORK/netpol-peers.yaml"
	render "${REQUIRED[@]}" \
		--set 'networkPolicy.api.from[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=ingress-nginx' \
		--set 'networkPolicy.metrics.from[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring' \
		--set 'networkPolicy.health.from[0].ipBlock.cidr=10.0.0.0/16' >"$peers" ||
		fail "render with network policy peers failed" || return 1
	local pdocs="$WORK/netpol-peers.d"
	split_docs "$peers" "$pdocs"
	doc=$(policy_of "$pdocs" NetworkPolicy api) || return 1
	want_count "$doc" 2 '^        - port: [a-z]+$' || return 1
	want_count "$doc" 1 'kubernetes\.io/metadata\.name: ingress-nginx$' || return 1
	want_count "$doc" 1 'kubernetes\.io/metadata\.name: monitoring$' || return 1
	want_none "$doc" 'podSelector: \{\}|ipBlock' || return 1
	for c in worker relay; do
		doc=$(policy_of "$pdocs" NetworkPolicy "$c") || return 1
		want_count "$doc" 2 '^        - port: [a-z]+$' || return 1
		want_count "$doc" 1 '^        - port: metrics$' || return 1
		want_count "$doc" 1 '^        - port: health$' || return 1
		want_count "$doc" 1 'kubernetes\.io/metadata\.name: monitoring$' || return 1
		want_count "$doc" 1 '^            cidr: 10\.0\.0\.0/16$' || return 1
		want_none "$doc" 'podSelector: \{\}|ingress-nginx' || return 1
	done
	local off="$WORK/netpol-off.yaml"
	render "${REQUIRED[@]}" --set networkPolicy.enabled=false >"$off" || fail "render without network policies failed" || return 1
	want_none "$off" '^kind: NetworkPolicy$' || return 1
	must_fail "peers as objects" "/networkPolicy/api/from" "${REQUIRED[@]}" --set 'networkPolicy.api.from[0]=everyone' || return 1
}

check_secret_scopes() {
	# Every secret set, from existing Secrets: each pod gets only its own.
	local out="$WORK/scopes.yaml"
	render "${EXISTING[@]}" --set credentials.existingSecret=lethe-system --set escalation.existingSecret=lethe-hook \
		--set certificates.existingSecret=lethe-signing >"$out" || fail "render with every secret failed" || return 1
	local docs="$WORK/scopes.d" doc role name want
	split_docs "$out" "$docs"
	local -A wants=(
		[api]="LETHE_DATABASE_URL LETHE_SUBJECT_KEY LETHE_CODEC_KEYS LETHE_SYSTEM_KEY LETHE_SIGNING_KEY"
		[worker]="LETHE_DATABASE_URL LETHE_SUBJECT_KEY LETHE_CODEC_KEYS LETHE_SYSTEM_KEY LETHE_ESCALATION_SECRET"
		[relay]="LETHE_DATABASE_URL LETHE_CODEC_KEYS LETHE_SYSTEM_KEY"
		[migrate]="LETHE_DATABASE_URL"
	)
	local seen=0
	for doc in "$docs"/*.yaml; do
		role=$(sed -n 's/^ *args: \["\([a-z]*\)"\]$/\1/p' "$doc")
		[[ -n "$role" ]] || continue
		seen=$((seen + 1))
		for name in LETHE_DATABASE_URL LETHE_SUBJECT_KEY LETHE_CODEC_KEYS LETHE_SYSTEM_KEY LETHE_SIGNING_KEY LETHE_ESCALATION_SECRET; do
			want=0
			[[ " ${wants[$role]} " == *" $name "* ]] && want=1
			want_count "$doc" "$want" "^ +- name: $name\$" || { fail "($role)"; return 1; }
		done
		# Nothing else comes from a Secret.
		want_count "$doc" "$(wc -w <<<"${wants[$role]}")" '^ +secretKeyRef:$' || { fail "($role)"; return 1; }
	done
	[[ "$seen" == 4 ]] || fail "want 4 workloads, got $seen"
}

check_metrics_port() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# Every component serves /metrics on a port of its own, named for the
	# NetworkPolicies (the ConfigMap and the migration's copy set it).
	want_count "$out" 2 'LETHE_METRICS_ADDR: "0\.0\.0\.0:9090"' || return 1
	want_count "$out" 3 '^            - name: metrics$' || return 1
	local docs="$WORK/metrics.d" doc
	split_docs "$out" "$docs"
	for doc in "$docs"/*.yaml; do
		grep -q '^ *args: \["\(api\|worker\|relay\)"\]$' "$doc" || continue
		grep -A1 '^            - name: metrics$' "$doc" | grep -q 'containerPort: 9090$' ||
			fail "$(basename "$doc"): the metrics port is not 9090" || return 1
	done
	local moved="$WORK/metrics-moved.yaml"
	render "${REQUIRED[@]}" --set metricsPort=9102 >"$moved" || fail "render with metricsPort failed" || return 1
	want_count "$moved" 2 'LETHE_METRICS_ADDR: "0\.0\.0\.0:9102"' || return 1
	want_count "$moved" 3 '^ +containerPort: 9102$' || return 1
	must_fail "a port number" "/metricsPort" "${REQUIRED[@]}" --set metricsPort=0 || return 1
}

check_failover() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# The fail-over timeouts reach the ConfigMap and the migration's copy,
	# with the defaults the binary has.
	want_count "$out" 2 'LETHE_KAFKA_SESSION_TIMEOUT: "6s"' || return 1
	want_count "$out" 2 'LETHE_KAFKA_HEARTBEAT_INTERVAL: "1s"' || return 1
	want_count "$out" 2 'LETHE_KAFKA_REBALANCE_TIMEOUT: "10s"' || return 1
	want_count "$out" 2 'LETHE_WORKFLOW_TASK_TIMEOUT: "5s"' || return 1
	want_count "$out" 2 'LETHE_STICKY_TIMEOUT: "3s"' || return 1
	want_count "$out" 2 'LETHE_WORKER_STOP_TIMEOUT: "10s"' || return 1
	local set="$WORK/failover.yaml"
	render "${REQUIRED[@]}" --set failover.kafkaSessionTimeout=10s --set failover.kafkaHeartbeatInterval=2s \
		--set failover.kafkaRebalanceTimeout=20s --set failover.workflowTaskTimeout=8s \
		--set failover.stickyTimeout=1500ms --set failover.workerStopTimeout=25s >"$set" ||
		fail "render with failover values failed" || return 1
	want_count "$set" 2 'LETHE_KAFKA_SESSION_TIMEOUT: "10s"' || return 1
	want_count "$set" 2 'LETHE_KAFKA_HEARTBEAT_INTERVAL: "2s"' || return 1
	want_count "$set" 2 'LETHE_KAFKA_REBALANCE_TIMEOUT: "20s"' || return 1
	want_count "$set" 2 'LETHE_WORKFLOW_TASK_TIMEOUT: "8s"' || return 1
	want_count "$set" 2 'LETHE_STICKY_TIMEOUT: "1500ms"' || return 1
	want_count "$set" 2 'LETHE_WORKER_STOP_TIMEOUT: "25s"' || return 1
	must_fail "a duration" "/failover/kafkaSessionTimeout" "${REQUIRED[@]}" --set failover.kafkaSessionTimeout=soon || return 1
	must_fail "a positive duration" "/failover/workflowTaskTimeout" "${REQUIRED[@]}" --set-string failover.workflowTaskTimeout=0 || return 1
	must_fail "a known setting" "failover" "${REQUIRED[@]}" --set failover.sessionTimeout=6s || return 1
}

check_reconciler() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	want_count "$out" 2 'LETHE_RECONCILE_INTERVAL: "5m"' || return 1
	want_count "$out" 2 'LETHE_RECONCILE_GRACE: "10m"' || return 1
	local off="$WORK/reconciler-off.yaml"
	render "${REQUIRED[@]}" --set-string reconciler.interval=0 --set reconciler.grace=30m >"$off" ||
		fail "render with the reconciler off failed" || return 1
	want_count "$off" 2 'LETHE_RECONCILE_INTERVAL: "0"' || return 1
	want_count "$off" 2 'LETHE_RECONCILE_GRACE: "30m"' || return 1
	must_fail "a duration" "/reconciler/interval" "${REQUIRED[@]}" --set reconciler.interval=often || return 1
	must_fail "a known setting" "reconciler" "${REQUIRED[@]}" --set reconciler.every=5m || return 1
}

# shellcheck source=scripts/helm-check-monitoring.sh
source "$(dirname "${BASH_SOURCE[0]}")/helm-check-monitoring.sh"

passed=0
failed=0
run() {
	local name=$1
	if "$name"; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		failed=$((failed + 1))
	fi
}

run check_lint
run check_defaults
run check_migration_hook
run check_existing_secrets_and_ingress
run check_checksum_rolls
run check_codec_keys
run check_certificates
run check_auth
run check_credentials
run check_transport
run check_required_settings_fail
run check_schema_rejects
run check_payload_encryption
run check_network_policies
run check_secret_scopes
run check_metrics_port
run check_monitoring_off_by_default
run check_monitoring_renders
run check_monitoring_rules_validate
run check_monitoring_values
run check_failover
run check_reconciler

echo "helm: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
