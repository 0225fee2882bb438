# Checks of the chart's monitoring (ServiceMonitor, PrometheusRule, Grafana
# dashboard), sourced by scripts/helm-check.sh, whose helpers (render, fail,
# want_count, want_none, must_fail, split_docs) and variables (WORK, CHART,
# REQUIRED) they use. The rules and the dashboard are validated by
# scripts/rulecheck, a Go module of its own built from Prometheus' rule and
# PromQL parsers, against the metric names registered in internal/metrics and
# the headings of docs/operating.md.

readonly MONITORING=(
	--set serviceMonitor.enabled=true
	--set prometheusRule.enabled=true
	--set dashboard.enabled=true
)
readonly RUNBOOK_URL="https://github.com/lethe-dev/lethe/blob/main/docs/operating.md"

check_monitoring_off_by_default() {
	local out="$WORK/defaults.yaml"
	[[ -s "$out" ]] || render "${REQUIRED[@]}" >"$out" || fail "render failed" || return 1
	# The CRDs may be missing: nothing of the Prometheus Operator's, nor the
	# dashboard, unless asked.
	want_none "$out" '^kind: (ServiceMonitor|PrometheusRule)$' || return 1
	want_none "$out" 'lethe\.dev/metrics|grafana_dashboard' || return 1
}

check_monitoring_renders() {
	local out="$WORK/monitoring.yaml"
	helm lint --strict "$CHART" --kube-version "$KUBE_VERSION" "${REQUIRED[@]}" "${MONITORING[@]}" >"$WORK/lint.txt" 2>&1 ||
		{ cat "$WORK/lint.txt" >&2; fail "helm lint (monitoring) failed"; } || return 1
	render "${REQUIRED[@]}" "${MONITORING[@]}" >"$out" || fail "render with monitoring failed" || return 1
	want_count "$out" 1 '^kind: ServiceMonitor$' || return 1
	want_count "$out" 1 '^kind: PrometheusRule$' || return 1
	want_count "$out" 1 '^    grafana_dashboard: "1"$' || return 1
	# Three headless metrics Services, one per component, which the
	# ServiceMonitor selects by their label; the API's own Service (it may be
	# a LoadBalancer) never exposes the metrics port.
	local docs="$WORK/monitoring.d" doc services=0
	split_docs "$out" "$docs"
	for doc in "$docs"/*.yaml; do
		grep -q '^kind: Service$' "$doc" || continue
		if grep -q '^    lethe\.dev/metrics: "true"$' "$doc"; then
			services=$((services + 1))
			want_count "$doc" 1 '^  clusterIP: None$' || return 1
			want_count "$doc" 1 '^      port: 9090$' || return 1
			want_count "$doc" 1 '^      targetPort: metrics$' || return 1
		else
			want_none "$doc" 'metrics' || return 1
		fi
	done
	[[ "$services" == 3 ]] || fail "want 3 metrics Services, got $services" || return 1
	want_count "$out" 1 '^      lethe\.dev/metrics: "true"$' || return 1
	# The sidecar's label is configurable.
	local relabelled="$WORK/dashboard-label.yaml"
	render "${REQUIRED[@]}" --set dashboard.enabled=true --set dashboard.label=lethe_dashboards \
		--set dashboard.labelValue=yes >"$relabelled" || fail "render with a dashboard label failed" || return 1
	want_count "$relabelled" 1 '^    lethe_dashboards: "yes"$' || return 1
	want_none "$relabelled" 'grafana_dashboard' || return 1
}

# rulecheck builds the checker once per run.
rulecheck() {
	if [[ ! -x "$WORK/rulecheck" ]]; then
		(cd scripts/rulecheck && go build -o "$WORK/rulecheck" .) || return 1
	fi
	"$WORK/rulecheck" -metrics internal/metrics -runbook docs/operating.md -runbook-url "$RUNBOOK_URL" "$@"
}

check_monitoring_rules_validate() {
	local rule="$WORK/rule.yaml" dashboard="$WORK/dashboard.yaml"
	render "${REQUIRED[@]}" "${MONITORING[@]}" -s templates/prometheusrule.yaml >"$rule" &&
		render "${REQUIRED[@]}" "${MONITORING[@]}" -s templates/dashboard-configmap.yaml >"$dashboard" ||
		fail "render of the rule or the dashboard failed" || return 1
	want_count "$rule" 6 '^        - alert: Lethe' || return 1
	rulecheck -rules "$rule" -dashboard "$dashboard" || fail "rulecheck refused the chart's rules or dashboard" || return 1
	# The checker must be able to fail: a misspelt metric name in a rule or
	# in the dashboard, a runbook anchor with no section, a bad duration.
	local bad="$WORK/bad" what
	for what in 's/lethe_erasures_overdue/lethe_erasure_overdue/' 's/#lethesystemsilent/#lethesilent/' \
		's/for: 10m/for: 10 minutes/'; do
		sed "$what" "$rule" >"$bad"
		if rulecheck -rules "$bad" -dashboard "$dashboard" 2>/dev/null; then
			fail "rulecheck accepted the rules after $what" || return 1
		fi
	done
	sed 's/lethe_confirmation_seconds_bucket/lethe_confirmation_second_bucket/' "$dashboard" >"$bad"
	if rulecheck -rules "$rule" -dashboard "$bad" 2>/dev/null; then
		fail "rulecheck accepted a misspelt metric name in the dashboard" || return 1
	fi
}

check_monitoring_values() {
	local out="$WORK/monitoring-values.yaml"
	# Thresholds, windows and durations come from values; a disabled alert
	# is left out; the selector picks the series.
	render "${REQUIRED[@]}" --set prometheusRule.enabled=true \
		--set prometheusRule.alerts.relayLag.threshold=50 --set prometheusRule.alerts.relayLag.for=3m \
		--set prometheusRule.alerts.failureRatio.window=6h --set prometheusRule.alerts.reconciler.enabled=false \
		--set-string prometheusRule.selector='job=~"lethe-.*"' \
		--set 'prometheusRule.labels.release=kube-prometheus-stack' >"$out" ||
		fail "render with alert values failed" || return 1
	want_count "$out" 1 'lethe_relay_lag_messages\{job=~"lethe-\.\*"\}\) > 50$' || return 1
	want_count "$out" 1 '^          for: 3m$' || return 1
	want_count "$out" 3 '\[6h\]' || return 1
	want_none "$out" 'LetheReconcilerActions' || return 1
	want_none "$out" 'namespace="lethe"' || return 1
	want_count "$out" 1 '^    release: kube-prometheus-stack$' || return 1
	# The schema rejects misspelt and invalid monitoring values.
	must_fail "known alert settings" "treshold" "${REQUIRED[@]}" \
		--set prometheusRule.alerts.relayLag.treshold=5 || return 1
	must_fail "a Prometheus duration" "/prometheusRule/alerts/silent/for" "${REQUIRED[@]}" \
		--set prometheusRule.alerts.silent.for=soon || return 1
	must_fail "a known severity" "/prometheusRule/alerts/overdue/severity" "${REQUIRED[@]}" \
		--set prometheusRule.alerts.overdue.severity=urgent || return 1
	must_fail "a ratio at most 1" "/prometheusRule/alerts/failureRatio/threshold" "${REQUIRED[@]}" \
		--set prometheusRule.alerts.failureRatio.threshold=5 || return 1
	must_fail "a boolean serviceMonitor.enabled" "/serviceMonitor/enabled" "${REQUIRED[@]}" \
		--set-string serviceMonitor.enabled=yes || return 1
	must_fail "a runbook URL without anchor" "/prometheusRule/runbookBaseURL" "${REQUIRED[@]}" \
		--set prometheusRule.runbookBaseURL=https://x.example/ops.md#top || return 1
}
