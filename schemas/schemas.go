// Package schemas holds the JSON Schemas (draft 2020-12) of Lethe's Kafka
// wire messages, one file per schema name, so that a connector written in
// any language can check what it sends and receives, and the API can serve
// them at GET /v1/schemas/<schema>.json. Package wire's Validate is the
// reference; the schemas express what JSON Schema can (item ids unique
// within a batch, byte lengths and the size of a whole message it cannot).
package schemas

import (
	"embed"
	"sort"
	"strings"
)

//go:embed *.json
var files embed.FS

// Get returns the JSON Schema of the wire message named schema (such as
// "erasure.command.v1"), and false for a name that has none.
func Get(schema string) ([]byte, bool) {
	if schema == "" || strings.ContainsAny(schema, "/\\") {
		return nil, false
	}
	b, err := files.ReadFile(schema + ".json")
	if err != nil {
		return nil, false
	}
	return b, true
}

// Names lists the schema names Get knows, sorted.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(out)
	return out
}
