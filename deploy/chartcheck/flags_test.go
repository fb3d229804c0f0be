package chartcheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"sigs.k8s.io/yaml"
)

// flag is one field of runCmd in cmd/proxyto/run.go.
type flag struct {
	typ string // Go type as written: time.Duration, int, float64, bool, string, []string
	def string // kong default tag ("" when none)
}

// derived are the flags the chart sets from values other than `config`.
var derived = []string{"listen", "admin", "drain-timeout", "auth-users", "auth-htpasswd", "upstream-ca", "routes", "tls-listen", "tls-cert", "tls-key"}

// runFlags parses run.go and returns runCmd's flags by kong name.
func runFlags(t *testing.T) map[string]flag {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), runGo, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", runGo, err)
	}
	flags := map[string]flag{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "runCmd" {
			return true
		}
		for _, fld := range ts.Type.(*ast.StructType).Fields.List {
			var tag reflect.StructTag
			if fld.Tag != nil {
				s, _ := strconv.Unquote(fld.Tag.Value)
				tag = reflect.StructTag(s)
			}
			if tag.Get("kong") == "-" || tag.Get("cmd") != "" || tag.Get("arg") != "" {
				continue
			}
			typ := exprString(fld.Type)
			for _, name := range fld.Names {
				n := tag.Get("name")
				if n == "" {
					n = kebab(name.Name)
				}
				flags[n] = flag{typ: typ, def: tag.Get("default")}
			}
		}
		return false
	})
	if len(flags) < 10 {
		t.Fatalf("found only %d flags in %s: has runCmd moved?", len(flags), runGo)
	}
	return flags
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	}
	return "?"
}

// kebab turns a Go field name into kong's flag name: MaxConnsPerIP -> max-conns-per-ip.
func kebab(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]))) {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// TestConfigCoversEveryFlag: every flag of `proxyto run` is reachable from the
// chart, values.yaml states each binary default, and the schema knows each key.
func TestConfigCoversEveryFlag(t *testing.T) {
	flags := runFlags(t)
	var values struct {
		Config map[string]any `json:"config"`
	}
	readYAML(t, chartDir+"/values.yaml", &values)
	var schema struct {
		Properties struct {
			Config struct {
				Properties           map[string]any `json:"properties"`
				AdditionalProperties *bool          `json:"additionalProperties"`
			} `json:"config"`
		} `json:"properties"`
	}
	raw, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	sc := schema.Properties.Config
	if sc.AdditionalProperties == nil || *sc.AdditionalProperties {
		t.Error("values.schema.json: config must set additionalProperties: false (typos must fail)")
	}

	for name, f := range flags {
		if slices.Contains(derived, name) {
			if _, ok := values.Config[name]; ok {
				t.Errorf("config.%s: this flag is set from its own value, not from config", name)
			}
			continue
		}
		v, ok := values.Config[name]
		if !ok {
			t.Errorf("flag --%s (%s, default %q) missing from values.yaml config", name, f.typ, f.def)
			continue
		}
		if _, ok := sc.Properties[name]; !ok {
			t.Errorf("flag --%s missing from values.schema.json config properties", name)
		}
		if !sameDefault(f, v) {
			t.Errorf("config.%s = %v, but run.go's default is %q", name, v, f.def)
		}
	}
	for name := range values.Config {
		if _, ok := flags[name]; !ok {
			t.Errorf("config.%s in values.yaml is not a flag of proxyto run", name)
		}
	}
	for name := range sc.Properties {
		if _, ok := flags[name]; !ok {
			t.Errorf("config.%s in values.schema.json is not a flag of proxyto run", name)
		}
	}
}

func sameDefault(f flag, v any) bool {
	switch f.typ {
	case "time.Duration":
		s, _ := v.(string)
		a, err1 := time.ParseDuration(s)
		b, err2 := time.ParseDuration(f.def)
		return err1 == nil && err2 == nil && a == b
	case "int", "int64", "float64":
		n, ok := v.(float64)
		d, err := strconv.ParseFloat(f.def, 64)
		return ok && err == nil && n == d
	case "bool":
		b, ok := v.(bool)
		return ok && b == (f.def == "true")
	case "string":
		s, ok := v.(string)
		return ok && s == f.def
	case "[]string":
		l, ok := v.([]any)
		return ok && len(l) == 0 && f.def == ""
	}
	return false
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
