// Package metricstest scrapes a /metrics handler the way Prometheus does
// and reads the values of what it served, for the tests of every role.
package metricstest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Families is one scrape, parsed: the metric families by name.
type Families map[string]*dto.MetricFamily

// Scrape asks h for GET /metrics in the text format and parses the answer
// with Prometheus' own text parser; a page the parser refuses fails t.
func Scrape(t testing.TB, h http.Handler) Families {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", rec.Code, rec.Body)
	}
	return Parse(t, rec.Body.String())
}

// Parse parses a page of the text exposition format, failing t when it
// does not parse.
func Parse(t testing.TB, page string) Families {
	t.Helper()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, page)
	}
	return fams
}

// Require fails t unless every family of names was served.
func (f Families) Require(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := f[n]; !ok {
			t.Errorf("/metrics lacks %s", n)
		}
	}
}

// Value is the value of the series of family name whose labels include
// labels (name, value, name, value…): a counter's or gauge's value, a
// histogram's sample count. ok is false when no series matches.
func (f Families) Value(name string, labels ...string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// LabelValues lists the values label takes in family name.
func (f Families) LabelValues(name, label string) []string {
	var out []string
	for _, m := range f[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
