package engine_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

const upPass = "s3cr3t-PW-never-logged"

// TestInprocObserver drives one exchange (or a few) per row on a fresh
// engine, closes the client, and checks the observer's account of it.
func TestInprocObserver(t *testing.T) {
	echo := startEcho(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := deadLn.Addr().String()
	_ = deadLn.Close() // nothing listens here any more: connection refused

	type want struct {
		kind     engine.Kind
		method   string
		status   int
		err      proxystatus.Type
		upstream bool // Upstream is the proxy's host:port (else empty)
	}
	cases := []struct {
		name     string
		auth     bool // the upstream requires user:upPass
		run      func(t *testing.T, c *client, up *testProxy) (sentUp, sentDown int64)
		want     []want
		tunnels  int
		exactIn  bool // BytesIn equals what the upstream read (single exchange)
		exactOut bool // BytesOut equals what the client read
	}{
		{
			name: "connect", auth: true, tunnels: 1, exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				c.write(connectReq(echo, "user:"+upPass+"@"+up.addr))
				if r := c.mustRead("CONNECT"); r.StatusCode != 200 {
					t.Fatalf("status %d", r.StatusCode)
				}
				if err := echoThrough(c, 100000, 1); err != nil {
					t.Fatal(err)
				}
				return 100000, 100000
			},
			want: []want{{engine.KindConnect, "CONNECT", 200, proxystatus.None, true}},
		},
		{
			name: "get", auth: true, exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				r := c.roundTrip("GET", get(oh, "/echo?x=1", "user:"+upPass+"@"+up.addr, "Connection: close\r\n"))
				if r.StatusCode != 200 || string(r.body) != "uri=/echo?x=1" {
					t.Fatalf("status %d body %q", r.StatusCode, r.body)
				}
				return 0, int64(len(r.body))
			},
			want: []want{{engine.KindHTTP, "GET", 200, proxystatus.None, true}},
		},
		{
			name: "post body", exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				body := strings.Repeat("b", 30000)
				r := c.roundTrip("POST", req("POST", "http://"+oh+"/echo", oh, up.addr,
					fmt.Sprintf("Content-Length: %d\r\nConnection: close\r\n", len(body)))+body)
				if r.StatusCode != 200 || r.Header.Get("X-Body-Len") != "30000" {
					t.Fatalf("status %d, origin saw %s bytes", r.StatusCode, r.Header.Get("X-Body-Len"))
				}
				return 30000, int64(len(r.body))
			},
			want: []want{{engine.KindHTTP, "POST", 200, proxystatus.None, true}},
		},
		{
			name: "pipelined", exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				c.write(get(oh, "/echo?1", up.addr) + get(oh, "/echo?2", up.addr) + get(oh, "/echo?3", up.addr, "Connection: close\r\n"))
				var down int64
				for i := 1; i <= 3; i++ {
					r := c.mustRead("GET")
					if string(r.body) != fmt.Sprintf("uri=/echo?%d", i) {
						t.Fatalf("response %d: %q", i, r.body)
					}
					down += int64(len(r.body))
				}
				return 0, down
			},
			want: []want{
				{engine.KindHTTP, "GET", 200, proxystatus.None, true},
				{engine.KindHTTP, "GET", 200, proxystatus.None, true},
				{engine.KindHTTP, "GET", 200, proxystatus.None, true},
			},
		},
		{
			name: "upgrade", tunnels: 1, exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				c.write(get(oh, "/upgrade", up.addr, "Connection: Upgrade\r\nUpgrade: echo\r\n"))
				r := c.mustRead("GET")
				if r.StatusCode != 101 {
					t.Fatalf("status %d", r.StatusCode)
				}
				c.echoCheck("ping-pong")
				_ = c.c.CloseWrite()
				if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
					t.Fatalf("extra bytes %q", rest)
				}
				return 9, 9
			},
			want: []want{{engine.KindUpgrade, "GET", 101, proxystatus.None, true}},
		},
		{
			name: "missing X-Proxy-To", exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				checkProxyError(t, c.roundTrip("GET", get(oh, "/echo", "")), 400, "http_request_error")
				return 0, 0
			},
			want: []want{{engine.KindHTTP, "GET", 400, proxystatus.HTTPRequestError, false}},
		},
		{
			name: "malformed request", exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				checkProxyError(t, c.roundTrip("GET", "GET /a b c HTTP/1.1\r\n\r\n"), 400, "http_request_error")
				return 0, 0
			},
			want: []want{{engine.KindHTTP, "*", 400, proxystatus.HTTPRequestError, false}},
		},
		{
			name: "refused upstream", exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				checkProxyError(t, c.roundTrip("CONNECT", connectReq(echo, "user:"+upPass+"@"+deadAddr)), 502, "connection_refused")
				return 0, 0
			},
			want: []want{{engine.KindConnect, "CONNECT", 502, proxystatus.ConnectionRefused, false}},
		},
		{
			name: "upstream 407 on CONNECT", auth: true, exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				r := c.roundTrip("CONNECT", connectReq(echo, "user:wrong-"+upPass+"@"+up.addr))
				checkProxyError(t, r, 502, "http_request_denied")
				if !strings.Contains(r.Header.Get("Proxy-Status"), "received-status=407") {
					t.Errorf("Proxy-Status %q lacks received-status=407", r.Header.Get("Proxy-Status"))
				}
				return 0, 0
			},
			want: []want{{engine.KindConnect, "CONNECT", 502, proxystatus.HTTPRequestDenied, true}},
		},
		{
			name: "upstream 407 on GET", auth: true, exactIn: true, exactOut: true,
			run: func(t *testing.T, c *client, up *testProxy) (int64, int64) {
				r := c.roundTrip("GET", get(oh, "/echo", "user:wrong-"+upPass+"@"+up.addr))
				checkProxyError(t, r, 502, "http_request_denied")
				return 0, 0
			},
			want: []want{{engine.KindHTTP, "GET", 502, proxystatus.HTTPRequestDenied, true}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var users map[string]string
			if tc.auth {
				users = map[string]string{"user": upPass}
			}
			up := startProxy(t, users)
			te := startEngine(t, engine.Config{})
			c := dialClient(t, te.addr)
			sentUp, sentDown := tc.run(t, c, up)
			_ = c.c.Close()
			st := te.rec.settled(t)
			if st.clientsOpened != 1 {
				t.Errorf("ClientOpened %d, want 1", st.clientsOpened)
			}
			if st.tunnelsOpened != tc.tunnels {
				t.Errorf("TunnelOpened %d, want %d", st.tunnelsOpened, tc.tunnels)
			}
			// Done precedes the last ClientClosed/TunnelClosed of a session.
			st = te.rec.snapshot()
			if len(st.records) != len(tc.want) {
				t.Fatalf("%d Done records, want %d (one per request or tunnel): %+v", len(st.records), len(tc.want), st.records)
			}
			var in, out int64
			for i, w := range tc.want {
				r := st.records[i]
				in += r.in
				out += r.out
				if w.method == "*" {
					w.method = r.method
				}
				if r.kind != w.kind || r.method != w.method || r.status != w.status || r.errType != w.err {
					t.Errorf("record %d: kind %v method %q status %d error %v; want %v %q %d %v (detail %q)",
						i, r.kind, r.method, r.status, r.errType, w.kind, w.method, w.status, w.err, r.detail)
				}
				wantUp := ""
				if w.upstream {
					wantUp = up.addr
				}
				if w.err == proxystatus.ConnectionRefused {
					wantUp = deadAddr // the upstream that failed is named too
				}
				if r.upstream != wantUp {
					t.Errorf("record %d: Upstream %q, want %q", i, r.upstream, wantUp)
				}
				for _, f := range []string{r.upstream, r.target, r.detail, string(r.method)} {
					if strings.Contains(f, upPass) || strings.Contains(f, "user:") {
						t.Errorf("record %d holds the upstream credentials: %q", i, f)
					}
				}
				if w.err == proxystatus.None && r.detail != "" {
					t.Errorf("record %d: detail %q on success", i, r.detail)
				}
			}
			if st.up != sentUp || st.down != sentDown {
				t.Errorf("Relayed up=%d down=%d, want %d/%d (bodies and tunnel bytes)", st.up, st.down, sentUp, sentDown)
			}
			if in < sentUp || out < sentDown {
				t.Errorf("BytesIn %d BytesOut %d below the payload %d/%d", in, out, sentUp, sentDown)
			}
			if tc.exactOut && out != c.rx.Load() {
				t.Errorf("BytesOut %d, client read %d", out, c.rx.Load())
			}
			if tc.exactIn && in != up.ReadBytes() {
				t.Errorf("BytesIn %d, upstream read %d", in, up.ReadBytes())
			}
		})
	}
}
