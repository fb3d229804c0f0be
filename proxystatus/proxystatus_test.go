package proxystatus_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/proxystatus"
)

// typeTable is the error table of docs/behaviour.md written out independently of proxystatus.go, one row per
// Type, so that a change to the package table shows up here.
var typeTable = []struct {
	t      proxystatus.Type
	name   string
	status int
}{
	{proxystatus.None, "none", 200},
	{proxystatus.HTTPRequestError, "http_request_error", 400},
	{proxystatus.HTTPRequestDenied, "http_request_denied", 502},
	{proxystatus.DestinationIPProhibited, "destination_ip_prohibited", 403},
	{proxystatus.ConnectionLimitReached, "connection_limit_reached", 429},
	{proxystatus.DNSError, "dns_error", 502},
	{proxystatus.ConnectionRefused, "connection_refused", 502},
	{proxystatus.ConnectionTerminated, "connection_terminated", 502},
	{proxystatus.ConnectionTimeout, "connection_timeout", 504},
	{proxystatus.HTTPResponseTimeout, "http_response_timeout", 504},
	{proxystatus.DestinationUnavailable, "destination_unavailable", 502},
	{proxystatus.TLSProtocolError, "tls_protocol_error", 502},
	{proxystatus.TLSCertificateError, "tls_certificate_error", 502},
	{proxystatus.ProxyLoopDetected, "proxy_loop_detected", 508},
	{proxystatus.ProxyInternalResponse, "proxy_internal_response", 503},
	{proxystatus.HTTPResponseError, "http_protocol_error", 502},
	{proxystatus.ProxyInternalError, "proxy_internal_error", 500},
}

// reasons are the phrases net/http uses for the statuses proxyto sends.
func wantReason(code int) string {
	if code == 200 {
		return "Error" // None is never rendered in practice; the fallback phrase
	}
	return http.StatusText(code)
}

func TestTypeTable(t *testing.T) {
	if len(typeTable) != proxystatus.NumTypes {
		t.Fatalf("test table has %d rows, package has NumTypes=%d: add the new type here", len(typeTable), proxystatus.NumTypes)
	}
	seen := map[string]proxystatus.Type{}
	for i, tt := range typeTable {
		if int(tt.t) != i {
			t.Errorf("row %d is Type %d: rows must be in declaration order", i, tt.t)
		}
		if got := tt.t.String(); got != tt.name {
			t.Errorf("Type(%d).String() = %q, want %q", tt.t, got, tt.name)
		}
		if got := tt.t.Status(); got != tt.status {
			t.Errorf("%v.Status() = %d, want %d", tt.t, got, tt.status)
		}
		if prev, dup := seen[tt.name]; dup {
			t.Errorf("%v and %v share the token %q", prev, tt.t, tt.name)
		}
		seen[tt.name] = tt.t
		if !isSFToken(tt.name) {
			t.Errorf("%v: %q is not an RFC 8941 sf-token", tt.t, tt.name)
		}
	}
	// Out of range: treated as an internal error, never a panic.
	for _, bad := range []proxystatus.Type{proxystatus.Type(proxystatus.NumTypes), 200, 255} {
		if got := bad.String(); got != "proxy_internal_error" {
			t.Errorf("Type(%d).String() = %q, want proxy_internal_error", bad, got)
		}
		if got := bad.Status(); got != 500 {
			t.Errorf("Type(%d).Status() = %d, want 500", bad, got)
		}
	}
}

func TestErrorCodeAndString(t *testing.T) {
	tests := []struct {
		name    string
		e       *proxystatus.Error
		code    int
		message string
	}{
		{"type status", proxystatus.New(proxystatus.DNSError, "no such host"), 502, "proxyto: dns_error: no such host"},
		{"no detail", &proxystatus.Error{Type: proxystatus.ConnectionTimeout}, 504, "proxyto: connection_timeout"},
		{"431 override", &proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 431, Detail: "head too large"}, 431, "proxyto: http_request_error: head too large"},
		{"407 override", &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Status: 407}, 407, "proxyto: http_request_denied"},
		{"received does not change code", &proxystatus.Error{Type: proxystatus.DestinationUnavailable, Received: 503}, 502, "proxyto: destination_unavailable"},
		{"out of range type", &proxystatus.Error{Type: 99}, 500, "proxyto: proxy_internal_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Code(); got != tt.code {
				t.Errorf("Code() = %d, want %d", got, tt.code)
			}
			if got := tt.e.Error(); got != tt.message {
				t.Errorf("Error() = %q, want %q", got, tt.message)
			}
			var err error = tt.e
			var pe *proxystatus.Error
			if !errors.As(err, &pe) || pe != tt.e {
				t.Errorf("errors.As did not find the *Error")
			}
		})
	}
}

// rendered is a response AppendResponse produced, parsed by net/http and by
// the RFC 8941 parser below.
type rendered struct {
	resp    *http.Response
	lines   []string // raw header lines after the status line
	body    string
	params  map[string]string // Proxy-Status parameters, values unescaped
	ordered []string          // parameter keys in order
}

// parseRendered checks the wire form of b strictly and returns it parsed.
func parseRendered(t testing.TB, b []byte) rendered {
	t.Helper()
	// The header section must consist of clean lines: no bare CR or LF, no
	// control characters, nothing outside visible ASCII, SP and HTAB.
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		t.Fatalf("no end of header section in %q", b)
	}
	lines := strings.Split(string(b[:end]), "\r\n")
	for i, line := range lines {
		for j := 0; j < len(line); j++ {
			if c := line[j]; (c < 0x20 && c != '\t') || c > 0x7e {
				t.Fatalf("header line %d has byte %#x at %d: %q", i, c, j, line)
			}
		}
	}
	br := bufio.NewReader(bytes.NewReader(b))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("http.ReadResponse: %v\n%q", err, b)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("%d bytes after the response (Content-Length wrong?): %q", len(rest), rest)
	}
	ps := resp.Header.Values("Proxy-Status")
	if len(ps) != 1 {
		t.Fatalf("Proxy-Status appears %d times: %q", len(ps), ps)
	}
	params, ordered, err := parseProxyStatus(ps[0])
	if err != nil {
		t.Fatalf("Proxy-Status %q: %v", ps[0], err)
	}
	return rendered{resp: resp, lines: lines[1:], body: string(body), params: params, ordered: ordered}
}

// sanitize is what AppendResponse promises for details: printable ASCII kept,
// everything else replaced by '?'.
func sanitize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func TestAppendResponseEveryType(t *testing.T) {
	for _, tt := range typeTable {
		for _, detail := range []string{"", "upstream said no"} {
			t.Run(tt.name+"/"+strconv.Quote(detail), func(t *testing.T) {
				e := proxystatus.New(tt.t, detail)
				r := parseRendered(t, proxystatus.AppendResponse(nil, e, ""))
				wantBody := detail
				if wantBody == "" {
					wantBody = tt.name
				}
				checkResponse(t, r, tt.status, wantReason(tt.status), tt.name, 0, wantBody)
				if len(r.lines) != 4 {
					t.Errorf("header lines %q, want exactly Proxy-Status, Content-Type, Content-Length, Connection", r.lines)
				}
			})
		}
	}
}

// checkResponse checks every field of a parsed response.
func checkResponse(t *testing.T, r rendered, code int, reason, errType string, received int, body string) {
	t.Helper()
	resp := r.resp
	if resp.StatusCode != code {
		t.Errorf("status %d, want %d", resp.StatusCode, code)
	}
	if want := strconv.Itoa(code) + " " + reason; resp.Status != want {
		t.Errorf("status line %q, want %q", resp.Status, want)
	}
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("proto %q", resp.Proto)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	// net/http consumes "Connection: close" into resp.Close; check the raw line.
	if !resp.Close || !slices.Contains(r.lines, "Connection: close") {
		t.Errorf("no Connection: close (Close=%v, lines %q)", resp.Close, r.lines)
	}
	if resp.ContentLength != int64(len(body)+1) {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(body)+1)
	}
	if r.body != body+"\n" {
		t.Errorf("body %q, want %q", r.body, body+"\n")
	}
	wantKeys := []string{"error", "details"}
	if received != 0 {
		wantKeys = []string{"error", "received-status", "details"}
	}
	if strings.Join(r.ordered, ",") != strings.Join(wantKeys, ",") {
		t.Errorf("Proxy-Status parameters %v, want %v", r.ordered, wantKeys)
	}
	if r.params["error"] != errType {
		t.Errorf("error=%q, want %q", r.params["error"], errType)
	}
	if received != 0 && r.params["received-status"] != strconv.Itoa(received) {
		t.Errorf("received-status=%q, want %d", r.params["received-status"], received)
	}
	if got, want := r.params["details"], sanitize(body); got != want {
		t.Errorf("details=%q, want %q", got, want)
	}
}

func TestAppendResponseFields(t *testing.T) {
	tests := []struct {
		name     string
		e        proxystatus.Error
		extra    string
		code     int
		reason   string
		received int
		headers  map[string]string // extra headers expected verbatim
	}{
		{
			name:   "431 head too large",
			e:      proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 431, Detail: "request header section too large"},
			code:   431,
			reason: "Request Header Fields Too Large",
		},
		{
			name:    "407 own auth with challenge",
			e:       proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Status: 407, Detail: "proxy authentication required"},
			extra:   "Proxy-Authenticate: Basic realm=\"proxyto\"\r\n",
			code:    407,
			reason:  "Proxy Authentication Required",
			headers: map[string]string{"Proxy-Authenticate": `Basic realm="proxyto"`},
		},
		{
			name:    "429 with Retry-After",
			e:       proxystatus.Error{Type: proxystatus.ConnectionLimitReached, Detail: "rate limit"},
			extra:   "Retry-After: 1\r\n",
			code:    429,
			reason:  "Too Many Requests",
			headers: map[string]string{"Retry-After": "1"},
		},
		{
			name:     "upstream 407",
			e:        proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: "upstream proxy refused the credentials"},
			code:     502,
			reason:   "Bad Gateway",
			received: 407,
		},
		{
			name:     "upstream CONNECT 503",
			e:        proxystatus.Error{Type: proxystatus.DestinationUnavailable, Received: 503, Detail: "upstream answered CONNECT with 503"},
			code:     502,
			reason:   "Bad Gateway",
			received: 503,
		},
		{
			name:    "two extra headers",
			e:       proxystatus.Error{Type: proxystatus.ProxyInternalResponse, Detail: "draining"},
			extra:   "Retry-After: 5\r\nX-Test: a b\r\n",
			code:    503,
			reason:  "Service Unavailable",
			headers: map[string]string{"Retry-After": "5", "X-Test": "a b"},
		},
		{
			name:   "unknown status override keeps a phrase",
			e:      proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 418, Detail: "teapot"},
			code:   418,
			reason: "Error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.e
			r := parseRendered(t, proxystatus.AppendResponse(nil, &e, tt.extra))
			checkResponse(t, r, tt.code, tt.reason, e.Type.String(), tt.received, e.Detail)
			for k, v := range tt.headers {
				if got := r.resp.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want [%q]", k, got, v)
				}
			}
			if want := 4 + len(tt.headers); len(r.lines) != want {
				t.Errorf("%d header lines, want %d: %q", len(r.lines), want, r.lines)
			}
		})
	}
}

func TestAppendResponseAppends(t *testing.T) {
	prefix := []byte("previous bytes|")
	dst := append([]byte(nil), prefix...)
	out := proxystatus.AppendResponse(dst, proxystatus.New(proxystatus.DNSError, "x"), "")
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("prefix overwritten: %q", out)
	}
	want := "HTTP/1.1 502 Bad Gateway\r\n" +
		"Proxy-Status: proxyto; error=dns_error; details=\"x\"\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: close\r\n" +
		"\r\n" +
		"x\n"
	if got := string(out[len(prefix):]); got != want {
		t.Errorf("rendered\n%q\nwant\n%q", got, want)
	}
}

// hostileDetails try to break out of the sf-string or the header section.
var hostileDetails = []string{
	`say "hi"`,
	`back\slash`,
	`\"`,
	`"`,
	`\`,
	`"; error=none; x="`,
	"line1\r\nSet-Cookie: stolen=1",
	"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"bare\nLF: yes",
	"bare\rCR",
	"nul\x00byte",
	"tab\there",
	"del\x7f",
	"non-ascii: héllo wörld — 日本語",
	"\xff\xfe invalid utf-8",
	"\x1b[31mANSI\x1b[0m",
	strings.Repeat(`"\`, 2000),
}

func TestAppendResponseHostileDetail(t *testing.T) {
	for _, d := range hostileDetails {
		t.Run(strconv.Quote(d)[:min(len(strconv.Quote(d)), 40)], func(t *testing.T) {
			e := &proxystatus.Error{Type: proxystatus.ConnectionRefused, Received: 502, Detail: d}
			r := parseRendered(t, proxystatus.AppendResponse(nil, e, ""))
			checkResponse(t, r, 502, "Bad Gateway", "connection_refused", 502, d)
			if len(r.lines) != 4 {
				t.Errorf("detail injected header lines: %q", r.lines)
			}
		})
	}
}

func FuzzAppendResponseDetail(f *testing.F) {
	for _, d := range hostileDetails {
		f.Add(d, uint8(proxystatus.ConnectionRefused), uint16(0))
	}
	f.Add("", uint8(proxystatus.None), uint16(0))
	f.Add("upstream answered 407", uint8(proxystatus.HTTPRequestDenied), uint16(407))
	f.Fuzz(func(t *testing.T, detail string, typ uint8, received uint16) {
		e := &proxystatus.Error{Type: proxystatus.Type(typ % uint8(proxystatus.NumTypes+1)), Received: int(received % 1000), Detail: detail}
		b := proxystatus.AppendResponse(nil, e, "")
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			t.Fatalf("no end of header section: %q", b)
		}
		for _, c := range b[:end] {
			if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c > 0x7e {
				t.Fatalf("byte %#x in header section: %q", c, b[:end])
			}
		}
		if n := bytes.Count(b[:end], []byte("\r\n")); n != 4 {
			t.Fatalf("%d header lines, want 5: %q", n+1, b[:end])
		}
		br := bufio.NewReader(bytes.NewReader(b))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("ReadResponse: %v\n%q", err, b)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("trailing bytes %q", rest)
		}
		wantBody := detail
		if wantBody == "" {
			wantBody = e.Type.String()
		}
		if string(body) != wantBody+"\n" {
			t.Fatalf("body %q, want %q", body, wantBody+"\n")
		}
		if resp.StatusCode != e.Code() {
			t.Fatalf("status %d, want %d", resp.StatusCode, e.Code())
		}
		ps := resp.Header.Values("Proxy-Status")
		if len(ps) != 1 {
			t.Fatalf("Proxy-Status %q", ps)
		}
		params, _, err := parseProxyStatus(ps[0])
		if err != nil {
			t.Fatalf("Proxy-Status %q: %v", ps[0], err)
		}
		if params["details"] != sanitize(wantBody) {
			t.Fatalf("details %q, want %q", params["details"], sanitize(wantBody))
		}
		if params["error"] != e.Type.String() {
			t.Fatalf("error %q, want %q", params["error"], e.Type.String())
		}
	})
}

// parseProxyStatus parses a Proxy-Status field value that must hold exactly one
// list member, the item token "proxyto" with parameters (RFC 8941 §3.1.2,
// §4.2.1, §4.2.3). It returns the parameters with sf-strings unescaped, and
// rejects anything not valid Structured Fields.
func parseProxyStatus(v string) (map[string]string, []string, error) {
	// HTTP field values may carry surrounding OWS; net/http trims it.
	p := &sfParser{s: v}
	tok, ok := p.token()
	if !ok || tok != "proxyto" {
		return nil, nil, errors.New("list member is not the token proxyto")
	}
	params := map[string]string{}
	var order []string
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		p.sp()
		key, ok := p.key()
		if !ok {
			return nil, nil, errors.New("bad parameter key at " + strconv.Itoa(p.i))
		}
		if _, dup := params[key]; dup {
			return nil, nil, errors.New("duplicate parameter " + key)
		}
		val := "?1"
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			val, ok = p.bareItem()
			if !ok {
				return nil, nil, errors.New("bad value for " + key)
			}
		}
		params[key] = val
		order = append(order, key)
	}
	if p.i != len(p.s) {
		return nil, nil, errors.New("trailing characters: " + strconv.Quote(p.s[p.i:]))
	}
	return params, order, nil
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) sp() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// key: lcalpha / "*" then lcalpha / DIGIT / "_" / "-" / "." / "*".
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.i >= len(p.s) || !(p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] == '*') {
		return "", false
	}
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-.*", c) >= 0) {
			break
		}
	}
	return p.s[start:p.i], true
}

func (p *sfParser) token() (string, bool) {
	start := p.i
	if p.i >= len(p.s) || !(isAlpha(p.s[p.i]) || p.s[p.i] == '*') {
		return "", false
	}
	for p.i++; p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/'); p.i++ {
	}
	return p.s[start:p.i], true
}

func (p *sfParser) bareItem() (string, bool) {
	if p.i >= len(p.s) {
		return "", false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		p.i++
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i-start > 15 || p.s[start:p.i] == "-" {
			return "", false
		}
		return p.s[start:p.i], true
	default:
		return p.token()
	}
}

// str parses an sf-string: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE
// where unescaped is %x20-21 / %x23-5B / %x5D-7E.
func (p *sfParser) str() (string, bool) {
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == '\\':
			p.i++
			if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", false
			}
			b.WriteByte(p.s[p.i])
		case c == '"':
			p.i++
			return b.String(), true
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isTchar(c byte) bool {
	return isAlpha(c) || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isSFToken(s string) bool {
	p := &sfParser{s: s}
	tok, ok := p.token()
	return ok && tok == s
}

func BenchmarkAppendResponse(b *testing.B) {
	e := &proxystatus.Error{Type: proxystatus.DestinationUnavailable, Received: 503, Detail: `upstream answered CONNECT with "503 Service Unavailable"`}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = proxystatus.AppendResponse(buf[:0], e, "Retry-After: 1\r\n")
	}
	b.SetBytes(int64(len(buf)))
}
