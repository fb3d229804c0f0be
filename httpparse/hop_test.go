package httpparse

import "testing"

func TestHopByHop(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		keepUpgrade bool
		skipHost    bool
		want        string
	}{
		{
			name: "fixed list stripped, order case and duplicates kept",
			in: "GET / HTTP/1.1|Host: h|x-a: 1|Connection: keep-alive|Proxy-Connection: keep-alive|Keep-Alive: 5|" +
				"TE: trailers|Trailer: X|Upgrade: h2c|Proxy-Authorization: Basic eA==|Proxy-Authenticate: Basic|" +
				"X-Proxy-To: p:1|X-Proxy-Session: s1|X-A: 2|Transfer-Encoding: chunked|Trailers: kept||",
			want: "Host: h|x-a: 1|X-A: 2|Transfer-Encoding: chunked|Trailers: kept|",
		},
		{
			name: "case-insensitive names",
			in:   "GET / HTTP/1.1|CONNECTION: x|kEEP-aLIVE: 1|te: a|x-PROXY-to: p:1|X-PROXY-SESSION: k|Via: 1||",
			want: "Via: 1|",
		},
		{
			name: "connection tokens across fields, case-insensitive",
			in:   "GET / HTTP/1.1|Connection: X-Foo, , x-bar|X-Foo: 1|X-Bar: 2|Connection: X-Baz|x-baz: 3|X-Qux: 4||",
			want: "X-Qux: 4|",
		},
		{
			name: "connection cannot strip framing or Host",
			in:   "POST / HTTP/1.1|Connection: Content-Length, Host, Transfer-Encoding, X-A|Host: h|Content-Length: 3|X-A: 1||",
			want: "Host: h|Content-Length: 3|",
		},
		{
			name:     "skipHost",
			in:       "CONNECT h:443 HTTP/1.1|Host: h:443|X-Vendor: 1||",
			skipHost: true,
			want:     "X-Vendor: 1|",
		},
		{
			name:        "keepUpgrade keeps Upgrade and adds Connection: Upgrade",
			in:          "GET / HTTP/1.1|Host: h|Connection: keep-alive, Upgrade|Upgrade: websocket|Sec-WebSocket-Key: k||",
			keepUpgrade: true,
			want:        "Host: h|Upgrade: websocket|Sec-WebSocket-Key: k|Connection: Upgrade|",
		},
		{
			name: "upgrade stripped without keepUpgrade",
			in:   "GET / HTTP/1.1|Host: h|Connection: Upgrade|Upgrade: websocket||",
			want: "Host: h|",
		},
		{
			name: "bare LF lines re-emitted with CRLF",
			in:   "GET / HTTP/1.1\nA:  b \nConnection: close\n\n",
			want: "A:  b |",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := crlf(tt.in)
			var r Request
			if _, err := r.Parse(buf); err != nil {
				t.Fatal(err)
			}
			got := r.AppendEndToEnd([]byte("PRE|"), buf, tt.keepUpgrade, tt.skipHost)
			if want := "PRE|" + string(crlf(tt.want)); string(got) != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestResponseHop(t *testing.T) {
	buf := crlf("HTTP/1.1 101 Switching Protocols|Connection: Upgrade, X-Hop|Upgrade: websocket|X-Hop: 1|Proxy-Authenticate: Basic|Sec-WebSocket-Accept: a||")
	var r Response
	if _, err := r.Parse(buf); err != nil {
		t.Fatal(err)
	}
	if got, want := string(r.AppendEndToEnd(nil, buf, false)), "Sec-WebSocket-Accept: a\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := string(r.AppendEndToEnd(nil, buf, true)), "Upgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: Upgrade\r\n"; got != want {
		t.Errorf("keepUpgrade: got %q, want %q", got, want)
	}
}

func TestLookupKnown(t *testing.T) {
	for name, want := range map[string]Known{
		"Host": KnownHost, "X-Proxy-To": KnownXProxyTo, "proxy-authorization": KnownProxyAuthorization,
		"X-Proxy-Session": KnownXProxySession, "x-PROXY-session": KnownXProxySession, "X-Proxy-Sessions": KnownOther,
		"Proxy-Authenticate": KnownProxyAuthenticate, "Connection": KnownConnection,
		"Proxy-Connection": KnownProxyConnection, "Keep-Alive": KnownKeepAlive, "Te": KnownTE,
		"Trailer": KnownTrailer, "Trailers": KnownOther, "Transfer-Encoding": KnownTransferEncoding,
		"Upgrade": KnownUpgrade, "Content-Length": KnownContentLength, "Expect": KnownExpect,
		"Hosts": KnownOther, "X-Proxy-Tx": KnownOther, "": KnownOther,
	} {
		if got := lookupKnown([]byte(name)); got != want {
			t.Errorf("lookupKnown(%q) = %d, want %d", name, got, want)
		}
	}
}
