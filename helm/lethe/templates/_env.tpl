{{/*
The environment of a Lethe container: (dict "root" $ "configMap" name
"secret" name "extraEnv" list) and one flag per secret the component needs,
so that each Secret reaches only the pods that use it:

  digests     LETHE_SUBJECT_KEY, the HMAC key of identifier digests
  codec       LETHE_CODEC_KEYS, the Temporal payload keys
  systemKey   LETHE_SYSTEM_KEY, the master key of system credentials
  escalation  LETHE_ESCALATION_SECRET, the key of escalation webhooks
  signs       LETHE_SIGNING_KEY, the seed of certificates of erasure
  transport   Kafka and Temporal TLS, SASL password, Temporal API key

The database URL reaches every component. Non-secret settings come from the
ConfigMap; extraEnv comes last, so it can override anything. The migration
passes the names of its hook-scoped copies, which exist before the release's
own resources do. Each template says why its component gets what it gets.
*/}}
{{- define "lethe.env" -}}
{{- $v := .root.Values -}}
{{- include "lethe.validate" .root -}}
envFrom:
  - configMapRef:
      name: {{ .configMap }}
env:
  - name: LETHE_DATABASE_URL
    valueFrom:
      secretKeyRef:
        {{- if $v.postgres.existingSecret }}
        name: {{ $v.postgres.existingSecret }}
        key: {{ $v.postgres.existingSecretKey }}
        {{- else }}
        name: {{ .secret }}
        key: database-url
        {{- end }}
  {{- if .digests }}
  - name: LETHE_SUBJECT_KEY
    valueFrom:
      secretKeyRef:
        {{- if $v.subjectKey.existingSecret }}
        name: {{ $v.subjectKey.existingSecret }}
        key: {{ $v.subjectKey.existingSecretKey }}
        {{- else }}
        name: {{ .secret }}
        key: subject-key
        {{- end }}
  {{- end }}
  {{- if .codec }}
  {{- if $v.codecKeys.existingSecret }}
  - name: LETHE_CODEC_KEYS
    valueFrom:
      secretKeyRef:
        name: {{ $v.codecKeys.existingSecret }}
        key: {{ $v.codecKeys.existingSecretKey }}
  {{- else if $v.codecKeys.value }}
  - name: LETHE_CODEC_KEYS
    valueFrom:
      secretKeyRef:
        name: {{ .secret }}
        key: codec-keys
  {{- end }}
  {{- end }}
  {{- if and .escalation $v.escalation.existingSecret }}
  - name: LETHE_ESCALATION_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ $v.escalation.existingSecret }}
        key: {{ $v.escalation.existingSecretKey }}
  {{- end }}
  {{- if and .systemKey $v.credentials.existingSecret }}
  - name: LETHE_SYSTEM_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.credentials.existingSecret }}
        key: {{ $v.credentials.existingSecretKey }}
  {{- end }}
  {{- with and .transport (include "lethe.transportEnv" .root | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- if and .signs $v.certificates.existingSecret }}
  - name: LETHE_SIGNING_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.certificates.existingSecret }}
        key: {{ $v.certificates.existingSecretKey }}
  {{- end }}
  {{- with .extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
