{{/*
Chart name, shortened to the 63 characters a label value allows.
*/}}
{{- define "lethe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name. A release already named after the chart is not
repeated ("lethe", not "lethe-lethe"). Kept to 52 characters so that the
longest component suffix ("-migrate") still fits the 63 of a DNS label.
*/}}
{{- define "lethe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one component's resources: (dict "root" $ "component" "api").
*/}}
{{- define "lethe.componentName" -}}
{{- printf "%s-%s" (include "lethe.fullname" .root) .component }}
{{- end }}

{{/*
Chart label value: name and version.
*/}}
{{- define "lethe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: (dict "root" $ "component" "api"). These never change after
an install, because a Deployment's selector is immutable; the component label
keeps the api, worker and relay selectors apart.
*/}}
{{- define "lethe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lethe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
Labels of every resource: (dict "root" $ "component" "api"); component may be
empty for resources shared by all components.
*/}}
{{- define "lethe.labels" -}}
helm.sh/chart: {{ include "lethe.chart" .root }}
{{ include "lethe.selectorLabels" . }}
app.kubernetes.io/part-of: lethe
{{- with .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the api, worker and relay.
*/}}
{{- define "lethe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lethe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image of every component; the tag defaults to the chart's appVersion so a
chart release pins the binary it was tested with.
*/}}
{{- define "lethe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Fails the render with a message naming the missing setting, instead of
deploying pods that crash-loop on an empty variable. Included wherever the
settings are read, so every template path checks them.
*/}}
{{- define "lethe.validate" -}}
{{- if and .Values.auth.oidc.issuer (not .Values.auth.oidc.audience) }}
{{- fail "auth.oidc.audience is required with auth.oidc.issuer: set it to the aud your identity provider puts in Lethe's access tokens" }}
{{- end }}
{{- range $c := list "api" "worker" "relay" "migrate" }}
{{- range (index $.Values $c).extraEnv }}
{{- if and (eq .name "LETHE_AUTH") (ne (toString .value) "on") }}
{{- fail (printf "%s.extraEnv sets LETHE_AUTH=%v: the chart never deploys an API without authentication (docs/security.md)" $c .value) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not .Values.postgres.existingSecret }}
{{- $_ := required "postgres.url is required: set postgres.url to the PostgreSQL URL, or postgres.existingSecret (and postgres.existingSecretKey) to a Secret holding it" .Values.postgres.url }}
{{- end }}
{{- if not .Values.subjectKey.existingSecret }}
{{- $_ := required "subjectKey.value is required: set it to 64 or more hex digits (openssl rand -hex 32), or subjectKey.existingSecret (and subjectKey.existingSecretKey) to a Secret holding it" .Values.subjectKey.value }}
{{- end }}
{{- if and .Values.payloadEncryption.enabled (not (or .Values.codecKeys.value .Values.codecKeys.existingSecret)) }}
{{- fail "codecKeys are required: Temporal would otherwise keep identifier values in its history in clear. Generate a key with `openssl rand -hex 32` and set codecKeys.value=k1:<hex>, or codecKeys.existingSecret (and codecKeys.existingSecretKey) to a Secret holding id:hexkey entries; or set payloadEncryption.enabled=false on purpose, knowing identifier values then sit in Temporal's history in clear" }}
{{- end }}
{{- $_ := required "temporal.address is required: set it to the Temporal frontend (host:port)" .Values.temporal.address }}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers is required: list at least one Kafka broker (host:port)" }}
{{- end }}
{{- with .Values.kafka.sasl }}
{{- if and .mechanism (not (and .username .existingSecret)) }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.username and kafka.sasl.existingSecret (the password's Secret)" }}
{{- end }}
{{- end }}
{{- range $name, $tls := dict "kafka.tls" .Values.kafka.tls "temporal.tls" .Values.temporal.tls }}
{{- if and (or $tls.certKey $tls.keyKey) (not (and $tls.certKey $tls.keyKey $tls.existingSecret)) }}
{{- fail (printf "%s.certKey and %s.keyKey go together, with %s.existingSecret" $name $name $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Transport security of the pods that reach Kafka and Temporal (api, worker,
relay): environment variables, then (below) the mounts and volumes of the
Secrets holding certificates. Passwords and keys come by secretKeyRef.
*/}}
{{- define "lethe.transportEnv" -}}
{{- $k := .Values.kafka -}}
{{- $t := .Values.temporal -}}
{{- if $k.tls.enabled }}
- name: LETHE_KAFKA_TLS
  value: "true"
{{- if and $k.tls.existingSecret $k.tls.caKey }}
- name: LETHE_KAFKA_TLS_CA
  value: /etc/lethe/kafka-tls/ca.pem
{{- end }}
{{- if and $k.tls.existingSecret $k.tls.certKey }}
- name: LETHE_KAFKA_TLS_CERT
  value: /etc/lethe/kafka-tls/cert.pem
- name: LETHE_KAFKA_TLS_KEY
  value: /etc/lethe/kafka-tls/key.pem
{{- end }}
{{- with $k.tls.serverName }}
- name: LETHE_KAFKA_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $k.sasl.mechanism }}
- name: LETHE_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: LETHE_KAFKA_SASL_USERNAME
  value: {{ $k.sasl.username | quote }}
- name: LETHE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.existingSecretKey }}
{{- end }}
{{- if $t.tls.enabled }}
- name: TEMPORAL_TLS
  value: "true"
{{- if and $t.tls.existingSecret $t.tls.caKey }}
- name: TEMPORAL_TLS_CA
  value: /etc/lethe/temporal-tls/ca.pem
{{- end }}
{{- if and $t.tls.existingSecret $t.tls.certKey }}
- name: TEMPORAL_TLS_CERT
  value: /etc/lethe/temporal-tls/cert.pem
- name: TEMPORAL_TLS_KEY
  value: /etc/lethe/temporal-tls/key.pem
{{- end }}
{{- with $t.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with $t.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $t.apiKey.existingSecretKey }}
{{- end }}
{{- end }}

{{/*
Secrets of certificates as volumes: (dict "name" "kafka-tls" "tls"
.Values.kafka.tls). Each key lands under a fixed file name, so the variables
above never depend on how the operator named the keys.
*/}}
{{- define "lethe.tlsVolume" -}}
{{- if and .tls.enabled .tls.existingSecret (or .tls.caKey .tls.certKey) }}
- name: {{ .name }}
  secret:
    secretName: {{ .tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- with .tls.caKey }}
      - key: {{ . }}
        path: ca.pem
      {{- end }}
      {{- if .tls.certKey }}
      - key: {{ .tls.certKey }}
        path: cert.pem
      - key: {{ .tls.keyKey }}
        path: key.pem
      {{- end }}
{{- end }}
{{- end }}

{{- define "lethe.tlsMount" -}}
{{- if and .tls.enabled .tls.existingSecret (or .tls.caKey .tls.certKey) }}
- name: {{ .name }}
  mountPath: /etc/lethe/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volume mounts and volumes of the transport Secrets: (dict "root" $).
*/}}
{{- define "lethe.transportMounts" -}}
{{- include "lethe.tlsMount" (dict "name" "kafka-tls" "tls" .Values.kafka.tls) }}
{{- include "lethe.tlsMount" (dict "name" "temporal-tls" "tls" .Values.temporal.tls) }}
{{- end }}

{{- define "lethe.transportVolumes" -}}
{{- include "lethe.tlsVolume" (dict "name" "kafka-tls" "tls" .Values.kafka.tls) }}
{{- include "lethe.tlsVolume" (dict "name" "temporal-tls" "tls" .Values.temporal.tls) }}
{{- end }}

{{/*
Whether the chart owns a Secret at all: only when at least one secret setting
is given as a value rather than an existing Secret.
*/}}
{{- define "lethe.managesSecret" -}}
{{- if or (not .Values.postgres.existingSecret) (not .Values.subjectKey.existingSecret) (include "lethe.codecKeysInSecret" .) }}true{{ end }}
{{- end }}

{{/*
Whether the codec keys are given as a value, and so kept in the chart's
Secret. With neither a value nor an existing Secret (allowed only with
payloadEncryption.enabled=false), no LETHE_CODEC_KEYS reaches the pods.
*/}}
{{- define "lethe.codecKeysInSecret" -}}
{{- if and .Values.codecKeys.value (not .Values.codecKeys.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Non-secret settings, shared by the ConfigMap and the migration's copy of it.
*/}}
{{- define "lethe.configData" -}}
{{- include "lethe.validate" . -}}
LETHE_HTTP_ADDR: {{ printf "0.0.0.0:%v" .Values.api.port | quote }}
LETHE_HEALTH_ADDR: {{ printf "0.0.0.0:%v" .Values.healthPort | quote }}
LETHE_METRICS_ADDR: {{ printf "0.0.0.0:%v" .Values.metricsPort | quote }}
LETHE_KAFKA_BROKERS: {{ join "," .Values.kafka.brokers | quote }}
LETHE_TOPIC_PARTITIONS: {{ .Values.kafka.topicPartitions | quote }}
LETHE_MAX_ATTEMPTS: {{ .Values.maxAttempts | quote }}
LETHE_SETTLE: {{ .Values.settle | quote }}
TEMPORAL_ADDRESS: {{ .Values.temporal.address | quote }}
TEMPORAL_NAMESPACE: {{ .Values.temporal.namespace | quote }}
LETHE_LOG_LEVEL: {{ .Values.log.level | quote }}
LETHE_LOG_FORMAT: {{ .Values.log.format | quote }}
LETHE_DEADLINE: {{ .Values.deadlines.default | quote }}
LETHE_DEADLINE_POLICIES: {{ .Values.deadlines.policies | quote }}
LETHE_TARGET_BEFORE: {{ .Values.deadlines.targetBefore | quote }}
LETHE_REMINDERS: {{ .Values.deadlines.reminders | quote }}
{{- with .Values.escalation.webhook }}
LETHE_ESCALATION_WEBHOOK: {{ . | quote }}
{{- end }}
LETHE_RETENTION: {{ .Values.certificates.retention | quote }}
{{- with .Values.payloadEncryption.plaintextBefore }}
LETHE_CODEC_PLAINTEXT_BEFORE: {{ . | quote }}
{{- end }}
LETHE_AUTH: "on"
LETHE_RATE_LIMIT: {{ .Values.auth.rateLimit | quote }}
LETHE_RATE_BURST: {{ .Values.auth.rateBurst | quote }}
{{- with .Values.auth.oidc.issuer }}
LETHE_OIDC_ISSUER: {{ . | quote }}
LETHE_OIDC_AUDIENCE: {{ $.Values.auth.oidc.audience | quote }}
{{- end }}
LETHE_KAFKA_SESSION_TIMEOUT: {{ .Values.failover.kafkaSessionTimeout | quote }}
LETHE_KAFKA_HEARTBEAT_INTERVAL: {{ .Values.failover.kafkaHeartbeatInterval | quote }}
LETHE_KAFKA_REBALANCE_TIMEOUT: {{ .Values.failover.kafkaRebalanceTimeout | quote }}
LETHE_WORKFLOW_TASK_TIMEOUT: {{ .Values.failover.workflowTaskTimeout | quote }}
LETHE_STICKY_TIMEOUT: {{ .Values.failover.stickyTimeout | quote }}
LETHE_WORKER_STOP_TIMEOUT: {{ .Values.failover.workerStopTimeout | quote }}
LETHE_RECONCILE_INTERVAL: {{ .Values.reconciler.interval | quote }}
LETHE_RECONCILE_GRACE: {{ .Values.reconciler.grace | quote }}
LETHE_CREDENTIAL_OVERLAP: {{ .Values.credentials.overlap | quote }}
LETHE_REQUIRE_SIGNATURES: {{ .Values.credentials.requireSignatures | quote }}
{{- with .Values.certificates.retiredKeys }}
LETHE_SIGNING_KEYS_RETIRED: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Secret settings the chart owns, base64-encoded, shared by the Secret and the
migration's copy of it. A setting that lives in an existing Secret is left out.
*/}}
{{- define "lethe.secretData" -}}
{{- include "lethe.validate" . }}
{{- if not .Values.postgres.existingSecret }}
database-url: {{ .Values.postgres.url | b64enc | quote }}
{{- end }}
{{- if not .Values.subjectKey.existingSecret }}
subject-key: {{ .Values.subjectKey.value | b64enc | quote }}
{{- end }}
{{- if include "lethe.codecKeysInSecret" . }}
codec-keys: {{ .Values.codecKeys.value | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Pod annotations: (dict "root" $ "values" .Values.api). The checksums roll the
pods when a setting changes, since environment variables are read only at
start. For a setting kept in an existing Secret only its name and key are
hashed: rotate such a Secret with a rollout restart.
*/}}
{{- define "lethe.podAnnotations" -}}
checksum/config: {{ include "lethe.configData" .root | sha256sum }}
checksum/secret: {{ print (include "lethe.secretData" .root) .root.Values.postgres.existingSecret .root.Values.postgres.existingSecretKey .root.Values.subjectKey.existingSecret .root.Values.subjectKey.existingSecretKey .root.Values.codecKeys.existingSecret .root.Values.codecKeys.existingSecretKey | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Liveness and readiness probes: (dict "port" "http" "values" .Values.api).
/healthz says the process is alive; /readyz also checks PostgreSQL and
Temporal, so a pod that lost them stops taking traffic without restarting.
*/}}
{{- define "lethe.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  {{- toYaml .values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  {{- toYaml .values.readinessProbe | nindent 2 }}
{{- end }}

{{/*
Pod security context, image pull secrets and scheduling of a pod spec:
(dict "root" $ "values" .Values.api).
*/}}
{{- define "lethe.podCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Label of the metrics Services, by which the ServiceMonitor tells them from
the API's own Service.
*/}}
{{- define "lethe.metricsServiceLabel" -}}
lethe.dev/metrics: "true"
{{- end }}
