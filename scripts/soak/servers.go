package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// timeouts are proxyto's, short so that every hang resolves within a run;
// every client deadline derives from them. No fault needs the dial or the
// response header timeout to be short ("hang" only makes the run longer),
// so both leave room for a loaded machine: a burst of TLS handshakes with
// the https upstream can take seconds there, and proxyto re-arms the
// response header timeout while it forwards a request body, yet the last
// megabyte of an upload can still sit in socket buffers that a busy
// upstream and origin take a while to drain.
type timeouts struct {
	clientHeader   time.Duration // --client-header-timeout
	responseHeader time.Duration // --response-header-timeout
	dial           time.Duration // --dial-timeout
	tunnelIdle     time.Duration // --tunnel-idle-timeout (also bounds a stalled response body)
	poolIdle       time.Duration // --pool-idle-timeout
	clientIdle     time.Duration // --idle-timeout
	// slack is added to every client deadline: time for a loaded machine
	// to be slow without the soak calling it a hang.
	slack time.Duration
}

var defaultTimeouts = timeouts{
	clientHeader:   2 * time.Second,
	responseHeader: 5 * time.Second,
	dial:           5 * time.Second,
	tunnelIdle:     10 * time.Second,
	poolIdle:       3 * time.Second,
	clientIdle:     10 * time.Second,
	slack:          10 * time.Second,
}

func (t timeouts) flags() []string {
	d := func(v time.Duration) string { return v.String() }
	return []string{
		"--client-header-timeout", d(t.clientHeader),
		"--response-header-timeout", d(t.responseHeader),
		"--dial-timeout", d(t.dial),
		"--tunnel-idle-timeout", d(t.tunnelIdle),
		"--pool-idle-timeout", d(t.poolIdle),
		"--idle-timeout", d(t.clientIdle),
	}
}

// headWait bounds the wait for a response head: a dial (proxyto gives it one
// second beyond --dial-timeout), the upstream's answer, and slack.
func (t timeouts) headWait() time.Duration {
	return t.dial + time.Second + t.responseHeader + t.slack
}

// bodyIdle bounds a read or write of a body or tunnel that moves no byte:
// proxyto closes a tunnel or a response body idle for --tunnel-idle-timeout.
func (t timeouts) bodyIdle() time.Duration { return t.tunnelIdle + t.slack }

// clientWait bounds how long proxyto may keep a client that does not finish
// its request head.
func (t timeouts) clientWait() time.Duration { return t.clientHeader + t.slack }

// upstream is the kind of upstream proxy an exchange goes through.
type upstream uint8

const (
	upHTTP upstream = iota
	upHTTPS
	upSOCKS5
	numUpstreams
)

var upstreamNames = [numUpstreams]string{"http", "https", "socks5"}

func (u upstream) String() string { return upstreamNames[u] }

// Credentials of every upstream: one pool key per upstream, so pooled
// connections are shared by every client (and by faulted and clean
// exchanges, which is what makes a stale pooled connection matter).
const (
	upUser = "soak"
	upPass = "soak-pw"
)

// servers are the processes and servers of one soak, all on 127.0.0.1.
type servers struct {
	proxy  *harness.Proxyto
	origin *harness.WireOrigin // GETs and uploads
	echo   *harness.RawOrigin  // tunnels
	http   *harness.WireUpstream
	https  *harness.WireUpstream
	socks  *harness.Socks5Server
	// refused is bound without a listener: every dial to it is refused.
	refused string
	// seen maps the absolute-form targets the http and https upstreams
	// received to when (each time: a request sent again shows twice); an
	// exchange removes its own when it ends, so what stays is what a
	// problem report needs.
	seenMu sync.Mutex
	seen   map[string][]time.Time
	bodies map[string]string // target → how its body went, as the upstream read it
}

// sawHead records that an upstream received a request for target.
func (s *servers) sawHead(target string) {
	s.seenMu.Lock()
	s.seen[target] = append(s.seen[target], time.Now())
	s.seenMu.Unlock()
}

// sawBody records how an upstream read the body of a request for target.
func (s *servers) sawBody(target string, n int64, err error) {
	what := fmt.Sprintf("all %d bytes", n)
	if err != nil {
		what = fmt.Sprintf("%d bytes"+bodyBrokeOff+"%v", n, err)
	}
	s.seenMu.Lock()
	if _, ok := s.seen[target]; ok { // not forgotten yet
		s.bodies[target] = what
	}
	s.seenMu.Unlock()
}

// heads returns when the upstreams received requests for target, and how
// the last one's body went ("" if not read to its end yet).
func (s *servers) heads(target string) ([]time.Time, string) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	return s.seen[target], s.bodies[target]
}

// forget drops what sawHead recorded for targets.
func (s *servers) forget(targets []string) {
	s.seenMu.Lock()
	for _, t := range targets {
		delete(s.seen, t)
		delete(s.bodies, t)
	}
	s.seenMu.Unlock()
}

// startServers starts the origins, the three fault-injecting upstreams and
// proxyto (PROXYTO_BIN, or built from ./cmd/proxyto).
func startServers(t *harness.ProgramTB, to timeouts, logSample string) *servers {
	s := &servers{seen: map[string][]time.Time{}, bodies: map[string]string{}}
	s.origin = harness.StartWireOrigin(t)
	s.origin.StopRecording()
	s.echo = harness.StartEchoOrigin(t)
	up := harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass, Faults: true, NoRecord: true,
		OnHead: func(h *harness.WireHead) {
			if m, target, _ := h.RequestLine(); m != "CONNECT" {
				s.sawHead(target)
			}
		},
		OnBody: func(h *harness.WireHead, n int64, err error) {
			_, target, _ := h.RequestLine()
			s.sawBody(target, n, err)
		}}
	s.http = harness.StartWireUpstream(t, up)
	ca := harness.NewTestCA(t)
	up.TLS = ca
	s.https = harness.StartWireUpstream(t, up)
	s.socks = harness.StartSocks5(t, true, upUser, upPass, harness.Socks5Faults(), harness.Socks5NoRecord())
	s.refused = harness.RefusedAddr(t)
	// --pprof: the leak checks make proxyto collect garbage before they
	// read its live heap, and dump its goroutines when they leaked.
	flags := append(to.flags(), "--upstream-ca", ca.CAFile, "--access-log-sample", logSample, "--pprof")
	s.proxy = harness.StartProxyto(t, flags...)
	return s
}

// names names the soak's listening addresses, for leak reports.
func (s *servers) names() map[string]string {
	return map[string]string{
		s.proxy.Addr: "proxyto", s.proxy.AdminAddr: "proxyto admin",
		s.http.Addr: "http upstream", s.https.Addr: "https upstream", s.socks.Addr: "socks5 upstream",
		s.origin.Addr: "origin", s.echo.Addr: "echo origin",
	}
}

// xProxyTo returns the X-Proxy-To value for an exchange through u with
// fault f: the refused port for "refuse", a fault-naming username for SOCKS5.
func (s *servers) xProxyTo(u upstream, f fault) string {
	user := upUser
	if u == upSOCKS5 && f != noFault && f != fRefuse {
		user = harness.FaultUser(upUser, faults[f].mode)
	}
	creds := user + ":" + upPass + "@"
	refusedPort := s.refused[strings.LastIndexByte(s.refused, ':')+1:]
	switch u {
	case upHTTP:
		if f == fRefuse {
			return "http://" + creds + s.refused
		}
		return "http://" + creds + s.http.Addr
	case upHTTPS:
		if f == fRefuse {
			return "https://" + creds + "127.0.0.1:" + refusedPort
		}
		return s.https.URL(creds) // https://…@localhost:P: the name goes through proxyto's resolver
	default:
		if f == fRefuse {
			return "socks5://" + creds + s.refused
		}
		return "socks5://" + creds + s.socks.Addr
	}
}

// headerLines returns the request header lines that route an exchange
// through u with fault f (X-Proxy-To, and X-Wire-Fault for http and https
// upstreams), each ending in CRLF.
func (s *servers) headerLines(u upstream, f fault) string {
	l := "X-Proxy-To: " + s.xProxyTo(u, f) + "\r\n"
	if u != upSOCKS5 && f != noFault && f != fRefuse {
		l += harness.FaultHeader + ": " + faults[f].mode.String() + "\r\n"
	}
	return l
}

// originURL returns the absolute URL of pathQuery on the WireOrigin.
func (s *servers) originURL(pathQuery string) string { return s.origin.URL(pathQuery) }

// itoa is strconv.Itoa for the request builders.
func itoa(n int) string { return strconv.Itoa(n) }
