package routes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
)

// Limits of a routes file.
const (
	MaxFileSize  = 8 << 20 // bytes of the whole file
	MaxNameLen   = 64      // bytes of a route name
	MaxEntries   = 4096    // upstreams of one route
	MaxRoutes    = 4096    // routes of one file
	keyRoutes    = "routes"
	keyDefault   = "default_route"
	keyStrategy  = "strategy"
	keyUpstreams = "upstreams"
)

// Errors of a routes file, wrapped in a *FileError that says where. None of
// them, nor FileError, ever holds an upstream entry's text: entries carry
// credentials.
var (
	// ErrFileSyntax occurs when the file is not well-formed YAML, is empty,
	// holds more than one document, uses an alias, or is larger than
	// MaxFileSize.
	ErrFileSyntax = errors.New("proxyto: routes file is not valid YAML")
	// ErrFileShape occurs when a part of the file has the wrong YAML kind
	// (a list where a mapping belongs, a mapping where a string belongs) or
	// an unknown key, so that typos are not silently ignored.
	ErrFileShape = errors.New("proxyto: routes file has an unexpected shape")
	// ErrNoRoutes occurs when the file defines no route.
	ErrNoRoutes = errors.New("proxyto: routes file defines no route")
	// ErrRouteName occurs when a route name is empty, longer than
	// MaxNameLen, holds a byte other than letters, digits, '_', '-' and '.',
	// contains "-route-" or "-session-" (which would end it inside a
	// username), or is defined twice.
	ErrRouteName = errors.New("proxyto: invalid or repeated route name")
	// ErrStrategy occurs when a strategy is not failover, round-robin,
	// random or sticky.
	ErrStrategy = errors.New("proxyto: unknown strategy (want failover, round-robin, random or sticky)")
	// ErrNoUpstreams occurs when a route lists no upstream, or more than
	// MaxEntries.
	ErrNoUpstreams = errors.New("proxyto: route needs 1 to 4096 upstreams")
	// ErrEntry occurs when an upstream entry is not one X-Proxy-To upstream
	// (the wrapped httpparse error says which rule it breaks; a comma list
	// is refused too: write one entry per upstream).
	ErrEntry = errors.New("proxyto: invalid upstream entry")
	// ErrDefaultRoute occurs when default_route names no route of the file.
	ErrDefaultRoute = errors.New("proxyto: default_route names no route")
)

// FileError says where a routes file is wrong: the line, the route and the
// upstream entry (1-based) when they are known. It never holds an entry's
// text.
type FileError struct {
	Path  string // file name, when loaded from a file
	Line  int    // 1-based line, 0 when unknown
	Route string // route name, when the error is inside a route
	Entry int    // 1-based entry of the route's upstreams, 0 when none
	Err   error  // one of the sentinels above, possibly wrapping a cause
}

// Error returns "proxyto: routes file PATH line N: route "r" entry E: reason".
func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString("proxyto: routes file")
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	if e.Line > 0 {
		b.WriteString(" line " + strconv.Itoa(e.Line))
	}
	if e.Route != "" {
		b.WriteString(": route " + strconv.Quote(e.Route))
	}
	if e.Entry > 0 {
		b.WriteString(" entry " + strconv.Itoa(e.Entry))
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.Err.Error(), "proxyto: "))
	return b.String()
}

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

// Load reads and parses the routes file at path. The table it returns is
// new and unshared: hand it to Holder.Store to publish it.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("proxyto: routes file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("proxyto: routes file %s: %w", path, err)
	}
	t, err := Parse(data)
	if fe, ok := errors.AsType[*FileError](err); ok {
		fe.Path = path
	}
	return t, err
}

// Parse parses a routes file:
//
//	routes:
//	  NAME:
//	    strategy: failover | round-robin | random | sticky   (default failover)
//	    upstreams: [ X-Proxy-To entry, ... ]
//	default_route: NAME                                     (optional)
//
// Errors are *FileError values.
func Parse(data []byte) (*Table, error) {
	if len(data) > MaxFileSize {
		return nil, &FileError{Err: fmt.Errorf("%w: larger than %d bytes", ErrFileSyntax, MaxFileSize)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FileError{Err: fmt.Errorf("%w: the file is empty", ErrFileSyntax)}
		}
		return nil, &FileError{Err: syntaxError(err)}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, &FileError{Line: more.Line, Err: fmt.Errorf("%w: more than one document", ErrFileSyntax)}
	}
	if len(doc.Content) != 1 {
		return nil, &FileError{Err: fmt.Errorf("%w: the file is empty", ErrFileSyntax)}
	}
	if err := noAliases(&doc); err != nil {
		return nil, err
	}
	p := parser{t: &Table{byName: map[string]*Route{}}}
	if err := p.top(doc.Content[0]); err != nil {
		return nil, err
	}
	return p.t, nil
}

// syntaxError keeps the YAML library's message, which names a line and a
// problem, behind ErrFileSyntax; the few messages that quote the document
// (an anchor's name) lose the quoted part, so no text of the file leaks.
func syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var b strings.Builder
	quoted := false
	for _, part := range strings.Split(msg, "'") {
		if quoted {
			b.WriteString("'…'")
		} else {
			b.WriteString(part)
		}
		quoted = !quoted
	}
	return fmt.Errorf("%w: %s", ErrFileSyntax, b.String())
}

// noAliases refuses aliases anywhere: the file is small enough to write out,
// and aliases would let a short file expand into a huge one.
func noAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return &FileError{Line: n.Line, Err: fmt.Errorf("%w: aliases (*name) are not supported", ErrFileSyntax)}
	}
	for _, c := range n.Content {
		if err := noAliases(c); err != nil {
			return err
		}
	}
	return nil
}

// parser walks the document node into a Table.
type parser struct {
	t *Table
}

func (p *parser) top(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return shapeError(n, "", "the top level must be a mapping with routes and default_route")
	}
	var routes, def *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch scalar(k) {
		case keyRoutes:
			if routes != nil {
				return shapeError(k, "", "routes is given twice")
			}
			routes = v
		case keyDefault:
			if def != nil {
				return shapeError(k, "", "default_route is given twice")
			}
			def = v
		default:
			return shapeError(k, "", "unknown top-level key (want routes or default_route)")
		}
	}
	if routes == nil || routes.Kind == yaml.ScalarNode && routes.Tag == "!!null" {
		return &FileError{Line: n.Line, Err: ErrNoRoutes}
	}
	if routes.Kind != yaml.MappingNode {
		return shapeError(routes, "", "routes must be a mapping of route names")
	}
	if len(routes.Content) == 0 {
		return &FileError{Line: routes.Line, Err: ErrNoRoutes}
	}
	if len(routes.Content)/2 > MaxRoutes {
		return shapeError(routes, "", "more than 4096 routes")
	}
	for i := 0; i+1 < len(routes.Content); i += 2 {
		if err := p.route(routes.Content[i], routes.Content[i+1]); err != nil {
			return err
		}
	}
	slices.SortFunc(p.t.routes, func(a, b *Route) int { return strings.Compare(a.name, b.name) })
	if def != nil {
		name := scalar(def)
		if def.Kind != yaml.ScalarNode || name == "" {
			return shapeError(def, "", "default_route must be a route name")
		}
		r := p.t.byName[name]
		if r == nil {
			return &FileError{Line: def.Line, Err: ErrDefaultRoute}
		}
		p.t.def = r
	}
	return nil
}

func (p *parser) route(k, v *yaml.Node) error {
	name := scalar(k)
	if k.Kind != yaml.ScalarNode || !ValidName(name) {
		return &FileError{Line: k.Line, Err: ErrRouteName}
	}
	if p.t.byName[name] != nil {
		return &FileError{Line: k.Line, Route: name, Err: ErrRouteName}
	}
	if v.Kind != yaml.MappingNode {
		return shapeError(v, name, "a route must be a mapping with strategy and upstreams")
	}
	r := &Route{name: name}
	var ups *yaml.Node
	for i := 0; i+1 < len(v.Content); i += 2 {
		fk, fv := v.Content[i], v.Content[i+1]
		switch scalar(fk) {
		case keyStrategy:
			s, ok := parseStrategy(scalar(fv))
			if fv.Kind != yaml.ScalarNode || !ok {
				return &FileError{Line: fv.Line, Route: name, Err: ErrStrategy}
			}
			r.strategy = s
		case keyUpstreams:
			if ups != nil {
				return shapeError(fk, name, "upstreams is given twice")
			}
			ups = fv
		default:
			return shapeError(fk, name, "unknown route key (want strategy or upstreams)")
		}
	}
	if ups == nil {
		return &FileError{Line: v.Line, Route: name, Err: ErrNoUpstreams}
	}
	if ups.Kind != yaml.SequenceNode {
		return shapeError(ups, name, "upstreams must be a list")
	}
	if len(ups.Content) == 0 || len(ups.Content) > MaxEntries {
		return &FileError{Line: ups.Line, Route: name, Err: ErrNoUpstreams}
	}
	var l httpparse.UpstreamList
	for i, e := range ups.Content {
		if e.Kind != yaml.ScalarNode {
			return shapeError(e, name, "an upstream entry must be a string").at(i)
		}
		if err := l.Parse([]byte(e.Value)); err != nil {
			// The httpparse error names the rule, never the bytes.
			var pe *httpparse.ProxyToError
			cause := err
			if errors.As(err, &pe) {
				cause = pe.Err
			}
			return &FileError{Line: e.Line, Route: name, Entry: i + 1, Err: fmt.Errorf("%w: %w", ErrEntry, cause)}
		}
		if l.N != 1 {
			return &FileError{Line: e.Line, Route: name, Entry: i + 1,
				Err: fmt.Errorf("%w: a comma list; write one upstream per entry", ErrEntry)}
		}
		r.ups = append(r.ups, own(&l.List[0]))
	}
	r.hrw = make([]uint64, len(r.ups))
	for i := range r.ups {
		r.hrw[i] = entryHash(&r.ups[i])
	}
	r.keys = make([]health.Key, len(r.ups))
	r.states = make([]*health.State, len(r.ups))
	p.t.routes = append(p.t.routes, r)
	p.t.byName[name] = r
	return nil
}

// own copies u's byte slices, which point into a reused UpstreamList, into
// one allocation the route owns.
func own(u *httpparse.Upstream) httpparse.Upstream {
	c := *u
	buf := make([]byte, 0, len(u.Host)+len(u.User)+len(u.Pass))
	buf = append(buf, u.Host...)
	c.Host = buf[:len(u.Host):len(u.Host)]
	if u.HasAuth {
		buf = append(buf, u.User...)
		c.User = buf[len(u.Host):len(buf):len(buf)]
		buf = append(buf, u.Pass...)
		c.Pass = buf[len(u.Host)+len(u.User) : len(buf) : len(buf)]
	}
	return c
}

// shapeError is an ErrFileShape at n.
func shapeError(n *yaml.Node, route, what string) *FileError {
	return &FileError{Line: n.Line, Route: route, Err: fmt.Errorf("%w: %s", ErrFileShape, what)}
}

// at sets the 1-based entry of e from a 0-based index.
func (e *FileError) at(i int) *FileError {
	e.Entry = i + 1
	return e
}

// scalar returns a scalar node's value, or "" for other kinds.
func scalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func parseStrategy(s string) (Strategy, bool) {
	for i, name := range strategyNames {
		if s == name {
			return Strategy(i), true
		}
	}
	return 0, false
}

// ValidName reports whether s may name a route: 1 to MaxNameLen letters,
// digits, '_', '-' or '.', without "-route-" or "-session-" inside (a
// username's route value ends at either).
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return !strings.Contains(s, markerRoute) && !strings.Contains(s, markerSession)
}
