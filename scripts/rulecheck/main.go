// Command rulecheck validates the monitoring the Helm chart renders, the way
// Prometheus and Grafana would read it, and against what Lethe exports:
//
//   - the PrometheusRule's groups parse and validate with Prometheus' own
//     rule parser (model/rulefmt, which also parses every expression and
//     annotation template), as promtool would;
//   - every alert has a severity label, a summary, a description and a
//     runbook_url that points at a heading of docs/operating.md;
//   - the dashboard ConfigMap holds valid JSON whose queries parse as PromQL
//     once Grafana's variables are put in, with a datasource variable used by
//     every panel;
//   - every metric name in the rules and the dashboard is one that Lethe
//     registers in internal/metrics, so that a misspelt name fails here
//     instead of silently matching nothing.
//
// It is its own module so that the prometheus module's dependencies never
// enter Lethe's go.mod. scripts/helm-check-monitoring.sh runs it:
//
//	rulecheck -rules rule.yaml -dashboard dashboard.yaml \
//	  -metrics internal/metrics -runbook docs/operating.md -runbook-url URL
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

func main() {
	var c checker
	flag.StringVar(&c.rulesFile, "rules", "", "rendered PrometheusRule manifest")
	flag.StringVar(&c.dashboardFile, "dashboard", "", "rendered dashboard ConfigMap manifest")
	flag.StringVar(&c.metricsDir, "metrics", "", "Go package that registers Lethe's metric families")
	flag.StringVar(&c.runbookFile, "runbook", "", "the runbook (docs/operating.md)")
	flag.StringVar(&c.runbookURL, "runbook-url", "", "URL of the runbook the alerts must point at, without an anchor")
	flag.Parse()
	if c.rulesFile == "" || c.dashboardFile == "" || c.metricsDir == "" || c.runbookFile == "" || c.runbookURL == "" {
		flag.Usage()
		os.Exit(2)
	}
	errs := c.run()
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, "rulecheck:", err)
	}
	if len(errs) > 0 {
		os.Exit(1)
	}
	fmt.Printf("rulecheck: %d alerts and %d dashboard queries use %d known metric names\n", c.alerts, c.queries, len(c.used))
}

type checker struct {
	rulesFile, dashboardFile, metricsDir, runbookFile, runbookURL string

	known   map[string]bool
	anchors map[string]bool
	parser  promql.Parser
	used    map[string]bool
	alerts  int
	queries int
}

func (c *checker) run() []error {
	var err error
	if c.known, err = exportedNames(c.metricsDir); err != nil {
		return []error{err}
	}
	runbook, err := os.ReadFile(c.runbookFile)
	if err != nil {
		return []error{err}
	}
	c.anchors = headingAnchors(string(runbook))
	c.parser = promql.NewParser(promql.Options{})
	c.used = map[string]bool{}
	return append(c.checkRules(), c.checkDashboard()...)
}

// manifest is the part of a rendered Kubernetes object the checks read.
type manifest struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Groups yaml.Node `yaml:"groups"`
	} `yaml:"spec"`
	Data map[string]string `yaml:"data"`
}

func readManifest(file, kind string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(file)
	if err != nil {
		return m, err
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", file, err)
	}
	if m.Kind != kind {
		return m, fmt.Errorf("%s: kind %q, want %s", file, m.Kind, kind)
	}
	return m, nil
}

// checkRules validates the PrometheusRule's groups as a Prometheus rule
// file, then what Lethe asks of each alert.
func (c *checker) checkRules() []error {
	m, err := readManifest(c.rulesFile, "PrometheusRule")
	if err != nil {
		return []error{err}
	}
	var file bytes.Buffer
	enc := yaml.NewEncoder(&file)
	if err := enc.Encode(map[string]*yaml.Node{"groups": &m.Spec.Groups}); err != nil {
		return []error{err}
	}
	groups, errs := rulefmt.Parse(file.Bytes(), false, model.UTF8Validation, c.parser, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return errs
	}
	for _, g := range groups.Groups {
		if len(g.Rules) == 0 {
			errs = append(errs, fmt.Errorf("group %s has no rules", g.Name))
		}
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			if err := c.checkQuery(r.Expr); err != nil {
				errs = append(errs, fmt.Errorf("rule %s: %w", name, err))
			}
			if r.Alert == "" {
				continue
			}
			c.alerts++
			errs = append(errs, c.checkAlert(r)...)
		}
	}
	return errs
}

var severities = []string{"critical", "warning", "info"}

// checkAlert asks for the labels and annotations an on-call reader needs.
func (c *checker) checkAlert(r rulefmt.Rule) []error {
	var errs []error
	if !slices.Contains(severities, r.Labels["severity"]) {
		errs = append(errs, fmt.Errorf("alert %s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities))
	}
	for _, a := range []string{"summary", "description", "runbook_url"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			errs = append(errs, fmt.Errorf("alert %s: no %s annotation", r.Alert, a))
		}
	}
	url := r.Annotations["runbook_url"]
	base, anchor, _ := strings.Cut(url, "#")
	switch {
	case url == "":
	case base != c.runbookURL:
		errs = append(errs, fmt.Errorf("alert %s: runbook_url %s is not in %s", r.Alert, url, c.runbookURL))
	case !c.anchors[anchor]:
		errs = append(errs, fmt.Errorf("alert %s: runbook_url anchor #%s is no heading of %s", r.Alert, anchor, c.runbookFile))
	case anchor != strings.ToLower(r.Alert):
		errs = append(errs, fmt.Errorf("alert %s: runbook_url anchor #%s is not the alert's own section", r.Alert, anchor))
	}
	return errs
}

// dashboard is the part of a Grafana dashboard the checks read. Rows keep
// their panels inside them when collapsed.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// checkDashboard reads the dashboard from its rendered ConfigMap, as the
// Grafana sidecar would, and checks every query.
func (c *checker) checkDashboard() []error {
	m, err := readManifest(c.dashboardFile, "ConfigMap")
	if err != nil {
		return []error{err}
	}
	if len(m.Data) != 1 {
		return []error{fmt.Errorf("dashboard ConfigMap holds %d entries, want one dashboard", len(m.Data))}
	}
	var errs []error
	for key, text := range m.Data {
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(text))
		if err := dec.Decode(&d); err != nil {
			return []error{fmt.Errorf("dashboard %s: %w", key, err)}
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return []error{fmt.Errorf("dashboard %s: text after the JSON object", key)}
		}
		if d.UID == "" || d.Title == "" {
			errs = append(errs, fmt.Errorf("dashboard %s: no uid or title", key))
		}
		var hasDatasource bool
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" {
				hasDatasource = true
			}
			if v.Type != "query" {
				continue
			}
			if err := c.checkVariable(v); err != nil {
				errs = append(errs, fmt.Errorf("dashboard variable %s: %w", v.Name, err))
			}
		}
		if !hasDatasource {
			errs = append(errs, errors.New("dashboard: no datasource variable"))
		}
		errs = append(errs, c.checkPanels(d.Panels, hasDatasource)...)
	}
	return errs
}

var datasourceRef = `{"type":"prometheus","uid":"${datasource}"}`

func (c *checker) checkPanels(panels []panel, hasDatasource bool) []error {
	var errs []error
	for _, p := range panels {
		if p.Type == "row" {
			errs = append(errs, c.checkPanels(p.Panels, hasDatasource)...)
			continue
		}
		if len(p.Targets) == 0 {
			errs = append(errs, fmt.Errorf("panel %q: no query", p.Title))
		}
		var ds any
		if err := json.Unmarshal(p.Datasource, &ds); err != nil || !jsonEqual(ds, datasourceRef) {
			errs = append(errs, fmt.Errorf("panel %q: datasource %s, want %s", p.Title, p.Datasource, datasourceRef))
		}
		for _, t := range p.Targets {
			c.queries++
			if err := c.checkQuery(grafanaToPromQL(t.Expr)); err != nil {
				errs = append(errs, fmt.Errorf("panel %q: %w", p.Title, err))
			}
		}
	}
	return errs
}

func jsonEqual(v any, want string) bool {
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return false
	}
	a, _ := json.Marshal(v)
	b, _ := json.Marshal(w)
	return bytes.Equal(a, b)
}

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

func (c *checker) checkVariable(v variable) error {
	var q struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &q); err != nil {
		// An older dashboard gives the query as a plain string.
		if err := json.Unmarshal(v.Query, &q.Query); err != nil {
			return fmt.Errorf("query %s: %w", v.Query, err)
		}
	}
	m := labelValues.FindStringSubmatch(q.Query)
	if m == nil {
		return fmt.Errorf("query %q is not label_values(selector, label)", q.Query)
	}
	c.queries++
	return c.checkQuery(grafanaToPromQL(m[1]))
}

var (
	rangeVariable = regexp.MustCompile(`\[\$\{?[A-Za-z_][A-Za-z0-9_]*\}?\]`)
	anyVariable   = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
)

// grafanaToPromQL puts values in for Grafana's variables: a duration in a
// range, a plain word elsewhere (they only appear in label values).
func grafanaToPromQL(q string) string {
	q = rangeVariable.ReplaceAllString(q, "[5m]")
	return anyVariable.ReplaceAllString(q, "x")
}

// checkQuery parses q as PromQL and checks every metric name it reads.
func (c *checker) checkQuery(q string) error {
	expr, err := c.parser.ParseExpr(q)
	if err != nil {
		return fmt.Errorf("%q does not parse: %w", q, err)
	}
	var errs []error
	promql.Inspect(expr, func(n promql.Node, _ []promql.Node) error {
		vs, ok := n.(*promql.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
		}
		c.used[name] = true
		if !c.known[name] {
			errs = append(errs, fmt.Errorf("%q reads %q, which Lethe does not export", q, name))
		}
		return nil
	})
	return errors.Join(errs...)
}

// exportedNames reads the names of the metric families the Go package in
// dir registers: the Name of every prometheus.*Opts literal and the first
// argument of every prometheus.NewDesc. A histogram's series are served as
// _bucket, _sum and _count, and so are read under those names.
func exportedNames(dir string) (map[string]bool, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			return nil, err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				kind := prometheusName(n.Type)
				if !strings.HasSuffix(kind, "Opts") {
					return true
				}
				for _, e := range n.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok || !isIdent(kv.Key, "Name") {
						continue
					}
					if name, ok := stringLit(kv.Value); ok {
						addFamily(names, name, kind)
					}
				}
			case *ast.CallExpr:
				if prometheusName(n.Fun) == "NewDesc" && len(n.Args) > 0 {
					if name, ok := stringLit(n.Args[0]); ok {
						addFamily(names, name, "Desc")
					}
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s registers no metric family", dir)
	}
	return names, nil
}

func addFamily(names map[string]bool, name, kind string) {
	switch kind {
	case "HistogramOpts":
		names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
	case "SummaryOpts":
		names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
	default:
		names[name] = true
	}
}

// prometheusName returns Sel of the expression prometheus.Sel, or "".
func prometheusName(e ast.Expr) string {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || !isIdent(sel.X, "prometheus") {
		return ""
	}
	return sel.Sel.Name
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown text: lower case, punctuation but hyphens and underscores
// dropped, spaces as hyphens.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	inFence := false
	for line := range strings.Lines(md) {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		m := heading.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}
