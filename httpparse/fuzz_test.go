package httpparse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Differential fuzzing against the standard library.
//
// Where both parsers accept an input they must agree. Where only one does,
// the difference must be one of the intended ones listed at each target;
// anything else fails the run. Crashers found are kept as f.Add seeds.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Proxy-To: u:p@p:3128\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nX-Proxy-To: @eu\r\nX-Proxy-Session: s42\r\nx-proxy-session: s43\r\n\r\n",
	"GET http://example.com/a?b=1 HTTP/1.1\r\nConnection: close\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /x HTTP/1.0\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"GET / HTTP/1.1\nHost: a\n\n",
	"OPTIONS * HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nA : b\r\n\r\n",
	"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
	"GET /%zz HTTP/1.1\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nPragma: no-cache\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

// FuzzRequest compares Request.Parse with net/http.ReadRequest.
//
// Intended differences (proxyto stricter, net/http lenient):
//   - whitespace between field name and colon (ErrBadHeader; RFC 9112 §5.1 says reject);
//   - obs-fold continuation lines (ErrObsFold; RFC 9112 §5.2 lets a proxy reject);
//   - versions other than HTTP/1.0 and HTTP/1.1 (ErrBadVersion);
//   - request-target checks: CONNECT needs host:port, absolute-form needs a valid
//     host[:port] without userinfo or fragment (ErrBadTarget);
//   - Transfer-Encoding together with Content-Length (ErrLengthAndChunked; net/http
//     drops the Content-Length), Transfer-Encoding in HTTP/1.0 (net/http ignores it)
//     (ErrUnsupportedTransferEncoding);
//   - more than MaxHeaders field lines (ErrTooManyHeaders), more than
//     MaxConnectionOptions Connection options (ErrTooManyConnectionOptions).
//
// Intended differences (proxyto lenient):
//   - empty lines before the request line are skipped (RFC 9112 §2.2);
//   - Transfer-Encoding lists ending in chunked ("gzip, chunked", or split
//     over fields) are accepted; net/http takes a single "chunked" only;
//   - the request-target is not parsed as a URI beyond its form (bad percent
//     escapes and the like are the origin's business), where net/http
//     runs url.ParseRequestURI.
func FuzzRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		n, err := r.Parse(data)
		lead := 0
		for lead < len(data) && (data[lead] == '\n' || data[lead] == '\r' && lead+1 < len(data) && data[lead+1] == '\n') {
			if data[lead] == '\r' {
				lead++
			}
			lead++
		}
		switch {
		case err == ErrNeedMore:
			if req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[lead:]))); herr == nil {
				t.Fatalf("proxyto wants more bytes, net/http parsed %q %q", req.Method, req.RequestURI)
			}
			return
		case err != nil:
			req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
			if herr != nil {
				return // both reject
			}
			if !intendedRequestReject(err, req, data) {
				t.Fatalf("proxyto rejects with %v what net/http accepts: %q", err, data)
			}
			return
		}

		// proxyto accepted: check its own invariants first.
		if n != r.HeadLen || n > len(data) || n < 4 {
			t.Fatalf("n %d HeadLen %d len %d", n, r.HeadLen, len(data))
		}
		req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[lead:n])))
		if herr != nil {
			var ue *url.Error
			if errors.As(herr, &ue) || strings.Contains(herr.Error(), "transfer encoding") {
				return // intended: see the list above
			}
			t.Fatalf("net/http rejects (%v) what proxyto accepts: %q", herr, data[:n])
		}
		buf := data
		if got := string(r.Method.Bytes(buf)); got != req.Method {
			t.Fatalf("method %q vs %q", got, req.Method)
		}
		if got := string(r.Target.Bytes(buf)); got != req.RequestURI {
			t.Fatalf("target %q vs %q", got, req.RequestURI)
		}
		if int(r.Major) != req.ProtoMajor || int(r.Minor) != req.ProtoMinor {
			t.Fatalf("version %d.%d vs %s", r.Major, r.Minor, req.Proto)
		}
		compareHeaders(t, buf, r.Headers, req.Header, "Host")
		if r.HasHost && req.URL.Host == "" && string(r.Host.Bytes(buf)) != req.Host {
			t.Fatalf("host %q vs %q", r.Host.Bytes(buf), req.Host)
		}
		want := int64(0)
		switch {
		case r.ContentLength >= 0:
			want = r.ContentLength
		case r.Chunked:
			want = -1
		}
		if req.ContentLength != want {
			t.Fatalf("content length %d (chunked %v) vs %d", r.ContentLength, r.Chunked, req.ContentLength)
		}
		if r.WantsClose() != req.Close {
			t.Fatalf("close %v vs %v", r.WantsClose(), req.Close)
		}
		// Re-emission: every non-hop line, verbatim.
		out := r.AppendEndToEnd(nil, buf, false, false)
		for _, h := range r.Headers {
			line := append(h.Line.Bytes(buf), '\r', '\n')
			if !h.Hop && !bytes.Contains(out, line) {
				t.Fatalf("end-to-end line %q missing from %q", line, out)
			}
		}
	})
}

// intendedRequestReject reports whether proxyto's err on data, which net/http
// accepted as req, is one of the intended differences.
func intendedRequestReject(err error, req *http.Request, data []byte) bool {
	switch err {
	case ErrBadHeader:
		for k := range req.Header {
			if strings.ContainsAny(k, " \t") {
				return true // whitespace before the colon
			}
		}
	case ErrObsFold:
		return true
	case ErrBadVersion:
		return req.ProtoMajor != 1 || req.ProtoMinor > 1
	case ErrBadTarget:
		return true
	case ErrLengthAndChunked:
		return len(req.TransferEncoding) > 0 || req.ProtoMinor == 0
	case ErrUnsupportedTransferEncoding:
		return req.ProtoMinor == 0
	case ErrTooManyHeaders, ErrTooManyConnectionOptions:
		return true
	}
	return false
}

// compareHeaders checks proxyto's field lines against net/http's map, which
// has the framing fields rewritten and Cache-Control maybe synthesised.
func compareHeaders(t *testing.T, buf []byte, hs []Header, h http.Header, ignore ...string) {
	t.Helper()
	got := http.Header{}
	for _, x := range hs {
		k := http.CanonicalHeaderKey(string(x.Name.Bytes(buf)))
		got[k] = append(got[k], string(x.Value.Bytes(buf)))
	}
	skip := func(k string) bool {
		return k == "Transfer-Encoding" || k == "Content-Length" || k == "Cache-Control" && len(got["Pragma"]) > 0 ||
			slices.Contains(ignore, k)
	}
	for k, v := range got {
		if !skip(k) && strings.Join(v, "\x00") != strings.Join(h[k], "\x00") {
			t.Fatalf("header %q: %q vs %q", k, v, h[k])
		}
	}
	for k := range h {
		if _, ok := got[k]; !ok && !skip(k) {
			t.Fatalf("net/http has header %q proxyto lacks", k)
		}
	}
}

// FuzzResponse compares Response.Parse with net/http.ReadResponse.
//
// Intended differences (proxyto stricter): spaces around the status code
// other than exactly one SP before it, status codes below 100 or with a
// sign, control bytes in the reason phrase, whitespace before a colon,
// obs-fold, versions other than 1.0/1.1, Transfer-Encoding with
// Content-Length, Transfer-Encoding in HTTP/1.0 or with chunked not last,
// more than MaxHeaders lines or MaxConnectionOptions options. (proxyto lenient): Transfer-Encoding lists
// other than a single "chunked" (a non-chunked final coding is read until
// close, RFC 9112 §6.3).
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 Connection established\r\nX-Exit-IP: 1.2.3.4\r\n\r\n",
		"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 204\r\n\r\n",
		"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
		"HTTP/1.1  200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		n, err := r.Parse(data)
		switch {
		case err == ErrNeedMore:
			if _, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil); herr == nil {
				t.Fatalf("proxyto wants more, net/http parsed %q", data)
			}
			return
		case err != nil:
			resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
			if herr != nil {
				return
			}
			ok := false
			switch err {
			case ErrBadStatusLine:
				ok = true // status line syntax: see the list above
			case ErrBadHeader:
				for k := range resp.Header {
					ok = ok || strings.ContainsAny(k, " \t")
				}
			case ErrObsFold, ErrTooManyHeaders, ErrTooManyConnectionOptions, ErrLengthAndChunked:
				ok = true
			case ErrUnsupportedTransferEncoding:
				ok = resp.ProtoMinor == 0 || len(resp.TransferEncoding) > 0
			}
			if !ok {
				t.Fatalf("proxyto rejects with %v what net/http accepts: %q", err, data)
			}
			return
		}
		resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data[:n])), nil)
		if herr != nil {
			if strings.Contains(herr.Error(), "transfer encoding") {
				return // intended: lenient Transfer-Encoding lists
			}
			t.Fatalf("net/http rejects (%v) what proxyto accepts: %q", herr, data[:n])
		}
		if r.Status != resp.StatusCode || int(r.Minor) != resp.ProtoMinor || int(r.Major) != resp.ProtoMajor {
			t.Fatalf("status %d %d.%d vs %q", r.Status, r.Major, r.Minor, resp.Status)
		}
		if got, want := string(r.Reason.Bytes(data)), strings.TrimPrefix(resp.Status[3:], " "); got != want {
			t.Fatalf("reason %q vs %q", got, want)
		}
		compareHeaders(t, data, r.Headers, resp.Header)
		if !r.NoBody(false) {
			want := r.ContentLength
			if r.Chunked {
				want = -1
			}
			if resp.ContentLength != want {
				t.Fatalf("content length %d vs %d", want, resp.ContentLength)
			}
		}
	})
}

// FuzzProxyTo compares UpstreamList.Parse with net/url.Parse of
// "scheme://" + entry. proxyto is the stricter of the two (no raw '@' or
// other reserved bytes in userinfo, no ':' in the decoded user, no decoded
// control bytes, no zones, DNS names and dotted-quad IPv4 only, ports 1-65535
// with at most five digits, no path at all), so the property is one-way:
// whatever proxyto accepts, net/url accepts with the same host, port, user
// and password.
func FuzzProxyTo(f *testing.F) {
	for _, s := range []string{
		"proxy:3128", "http://u:p%40ss@proxy.example:8080", "socks5h://[::1]:1080", "https://1.2.3.4",
		"a:1, b:2", "u@h", ":p@h", "SOCKS5://h", "h:0", "[fe80::1%25eth0]:1", "u:p@ss@h", "h/x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		var l UpstreamList
		if err := l.Parse(v); err != nil {
			var pe *ProxyToError
			if !errors.As(err, &pe) || strings.HasPrefix(err.Error(), "proxyto: ") == false {
				t.Fatalf("error %v", err)
			}
			if len(v) >= 8 && strings.Contains(err.Error(), string(v)) {
				t.Fatalf("error %q holds the input", err)
			}
			return
		}
		entries := strings.Split(string(trimOWS(v)), ",")
		if len(entries) != l.N {
			t.Fatalf("%d entries, N %d", len(entries), l.N)
		}
		for i, e := range entries {
			e = string(trimOWS([]byte(e)))
			u := l.List[i]
			raw := e
			if !strings.Contains(e, "://") {
				raw = "http://" + e
			}
			pu, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("net/url rejects %q: %v", raw, err)
			}
			if pu.Path != "" || pu.RawQuery != "" || pu.Fragment != "" || pu.Opaque != "" {
				t.Fatalf("net/url sees a path in %q", raw)
			}
			if strings.ToLower(pu.Scheme) != u.Scheme.String() {
				t.Fatalf("scheme %q vs %v", pu.Scheme, u.Scheme)
			}
			if pu.Hostname() != string(u.Host) {
				t.Fatalf("host %q vs %q", pu.Hostname(), u.Host)
			}
			port := u.Scheme.DefaultPort()
			if p := pu.Port(); p != "" {
				n, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("port %q", p)
				}
				port = uint16(n)
			}
			if port != u.Port {
				t.Fatalf("port %d vs %d", port, u.Port)
			}
			if (pu.User != nil) != u.HasAuth {
				t.Fatalf("auth %v vs %v", pu.User != nil, u.HasAuth)
			}
			if pu.User != nil {
				pass, _ := pu.User.Password()
				if pu.User.Username() != string(u.User) || pass != string(u.Pass) {
					t.Fatalf("credentials differ for %q", raw)
				}
			}
		}
	})
}

// FuzzChunked compares ChunkScanner with httputil.NewChunkedReader (plus
// textproto for the trailer section, which net/http reads separately).
//
// Intended differences (proxyto stricter): control bytes in chunk
// extensions, and the trailer section's syntax (textproto accepts bare LF,
// obs-fold and whitespace before a colon; RFC 9112 §7.1 wants CRLF field
// lines), and trailer sections over MaxTrailerBytes. (proxyto lenient):
// BWS before ';' (RFC 9112 §7.1.1 allows it), and no limit on the ratio of
// framing to data (net/http refuses more than 16 KiB of excess).
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\nNEXT", "0\r\n\r\n", "5 ;a\r\nhello\r\n0\r\n\r\n",
		"a\r\n0123456789\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\nX: y\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// proxyto, byte by byte, collecting the data bytes.
		var s ChunkScanner
		var body []byte
		end, done := 0, false
		var err error
		for i := range data {
			if s.state == csData {
				body = append(body, data[i])
			}
			var n int
			n, done, err = s.Scan(data[i : i+1])
			end += n
			if err != nil || done {
				break
			}
		}
		// And in one call: same outcome.
		var s2 ChunkScanner
		n2, done2, err2 := s2.Scan(data)
		if n2 != end || done2 != done || err2 != err {
			t.Fatalf("one call (%d %v %v) vs bytewise (%d %v %v)", n2, done2, err2, end, done, err)
		}

		// net/http.
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		hbody, herr := io.ReadAll(httputil.NewChunkedReader(br))
		hend, trailerOK := 0, false
		if herr == nil {
			consumed := len(data) - src.Len() - br.Buffered()
			rest := data[consumed:]
			tbr := bufio.NewReader(bytes.NewReader(rest))
			if _, terr := textproto.NewReader(tbr).ReadMIMEHeader(); terr == nil {
				trailerOK = true
				hend = consumed + len(rest) - tbr.Buffered()
			}
		}
		netOK := herr == nil && trailerOK

		switch {
		case done && netOK:
			if !bytes.Equal(body, hbody) || end != hend {
				t.Fatalf("body %q end %d vs net/http %q end %d", body, end, hbody, hend)
			}
		case done && herr != nil:
			if !bytes.Contains(data[:end], []byte(" ;")) && !bytes.Contains(data[:end], []byte("\t;")) &&
				!strings.Contains(herr.Error(), "non-data") {
				t.Fatalf("proxyto accepts %q, net/http: %v", data[:end], herr)
			}
		case done && !trailerOK:
			t.Fatalf("proxyto accepts trailers textproto rejects: %q", data[:end])
		case err != nil && netOK:
			switch err {
			case ErrBadTrailer, ErrChunkLineTooLong:
			case ErrBadChunkLine:
				if !hasCTLExtension(data) {
					t.Fatalf("proxyto rejects (%v) %q, net/http accepts", err, data)
				}
			default:
				t.Fatalf("proxyto rejects (%v) %q, net/http accepts", err, data)
			}
		case err == nil && !done && netOK:
			t.Fatalf("proxyto wants more of %q, net/http finished at %d", data, hend)
		}
	})
}

// hasCTLExtension reports whether some chunk line holds a control byte after ';'.
func hasCTLExtension(data []byte) bool {
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			for _, c := range bytes.TrimSuffix(line[i:], []byte("\r")) {
				if c < ' ' && c != '\t' || c == 0x7f {
					return true
				}
			}
		}
	}
	return false
}
