package engine_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
)

// trickle writes s in pieces of at most size bytes, pausing between them so
// that the engine reads most pieces on their own: a head arrives in parts,
// as from a slow client. The pause is not asserted on; it only makes partial
// reads likely.
func (c *client) trickle(s string, size int) {
	c.t.Helper()
	for len(s) > 0 {
		n := min(size, len(s))
		c.write(s[:n])
		s = s[n:]
		time.Sleep(time.Millisecond)
	}
}

// TestInprocHeadsInParts: a head that arrives in parts (the engine keeps
// the part it read out of gnet's buffer until the rest comes) is parsed as
// a whole, and the bytes that came with its last part — a body, early
// tunnel data, a pipelined request — are neither lost nor duplicated.
func TestInprocHeadsInParts(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{MaxHeaderBytes: 2048})
	body := strings.Repeat("0123456789abcdef", 300) // 4800 bytes, sent with the head's last part
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(body)))

	for _, size := range []int{1, 7, 64} {
		t.Run(fmt.Sprint("pieces of ", size), func(t *testing.T) {
			t.Run("GET", func(t *testing.T) {
				c := dialClient(t, te.addr)
				c.trickle(get(oh, "/echo?g", up.addr), size)
				if r := c.mustRead("GET"); r.StatusCode != 200 || r.Header.Get("X-Uri") != "/echo?g" {
					t.Fatalf("status %d, uri %q", r.StatusCode, r.Header.Get("X-Uri"))
				}
			})
			t.Run("POST with its body and a pipelined GET in the last part", func(t *testing.T) {
				c := dialClient(t, te.addr)
				head := req("POST", "http://"+oh+"/echo?p", oh, up.addr, fmt.Sprintf("Content-Length: %d\r\n", len(body)))
				cut := len(head) - 3 // the last part: the end of the head, the body, the next request
				c.trickle(head[:cut], size)
				c.write(head[cut:] + body + get(oh, "/echo?next", up.addr))
				r := c.mustRead("POST")
				if r.StatusCode != 200 || r.Header.Get("X-Body-Sha256") != sum || r.Header.Get("X-Body-Len") != fmt.Sprint(len(body)) {
					t.Fatalf("POST: status %d, body length %s, sha %s", r.StatusCode, r.Header.Get("X-Body-Len"), r.Header.Get("X-Body-Sha256"))
				}
				if r := c.mustRead("GET"); r.StatusCode != 200 || r.Header.Get("X-Uri") != "/echo?next" {
					t.Fatalf("pipelined GET: status %d, uri %q", r.StatusCode, r.Header.Get("X-Uri"))
				}
			})
			t.Run("CONNECT with early data in the last part", func(t *testing.T) {
				c := dialClient(t, te.addr)
				head := connectReq(startEcho(t), up.addr)
				c.trickle(head[:len(head)-1], size)
				c.write(head[len(head)-1:] + "early")
				if r := c.mustRead("CONNECT"); r.StatusCode != 200 {
					t.Fatalf("CONNECT: status %d", r.StatusCode)
				}
				got := make([]byte, len("early"))
				if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "early" {
					t.Fatalf("early data: %q, %v", got, err)
				}
				c.echoCheck("after")
			})
			t.Run("too large", func(t *testing.T) {
				c := dialClient(t, te.addr)
				c.trickle(get(oh, "/echo", up.addr, "X-Pad: "+strings.Repeat("p", 2100)+"\r\n")[:2200], max(size, 64))
				r := c.mustRead("GET")
				checkProxyError(t, r, 431, "http_request_error")
			})
			t.Run("malformed", func(t *testing.T) {
				c := dialClient(t, te.addr)
				c.trickle("GET http://"+oh+"/ HTTP/1.1\r\nHost: "+oh+"\r\nBad Header\r\n\r\n", size)
				r := c.mustRead("GET")
				checkProxyError(t, r, 400, "http_request_error")
			})
		})
	}
}

// TestInprocProxyHeaderAndHeadInParts: a PROXY header and the request head
// after it, both arriving a byte at a time.
func TestInprocProxyHeaderAndHeadInParts(t *testing.T) {
	origin := startOrigin(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{ProxyPeers: trustLoopback(t)})
	for _, h := range []struct{ name, header string }{
		{"v1", proxyV1("203.0.113.7:4711")},
		{"v2", proxyV2("192.0.2.9:5000")},
	} {
		t.Run(h.name, func(t *testing.T) {
			te.rec.with(func(s *obsStats) { *s = obsStats{} })
			c := dialClient(t, te.addr)
			c.trickle(h.header+get(originHost(origin), "/echo?pp", up.addr), 1)
			if r := c.mustRead("GET"); r.StatusCode != 200 || r.Header.Get("X-Uri") != "/echo?pp" {
				t.Fatalf("status %d, uri %q", r.StatusCode, r.Header.Get("X-Uri"))
			}
			eventually(t, "the access record", func() bool { return len(te.rec.snapshot().records) > 0 })
			if s := te.rec.snapshot(); s.records[0].client.Addr().String() == "127.0.0.1" {
				t.Errorf("record's client %s: the PROXY header's address was not used", s.records[0].client)
			}
		})
	}
}
