{{/*
A NetworkPolicy that admits ingress to one component's pods on the listed
ports alone: (dict "root" $ "component" "worker" "rules" (list (dict "port"
"metrics" "from" peers "sameNamespace" true) ...)). A rule whose from is
empty admits the pods of the release's namespace when sameNamespace is true,
and is left out otherwise; a component left without any rule admits no
ingress at all. Egress is not restricted (values.yaml, networkPolicy).
*/}}
{{- define "lethe.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "lethe.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "lethe.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "lethe.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    {{- range .rules }}
    {{- if or .from .sameNamespace }}
    - ports:
        - port: {{ .port }}
          protocol: TCP
      from:
        {{- if .from }}
        {{- toYaml .from | nindent 8 }}
        {{- else }}
        - podSelector: {}
        {{- end }}
    {{- end }}
    {{- end }}
{{- end }}
