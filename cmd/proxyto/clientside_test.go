package main

import (
	"errors"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

func TestCheckClientSide(t *testing.T) {
	for _, c := range []struct {
		name  string
		r     runCmd
		want  error
		peers string
	}{
		{"none", runCmd{Listen: ":8080"}, nil, ""},
		{"listener without pair", runCmd{Listen: ":8080", TLSListen: ":8443"}, errTLSPair, ""},
		{"cert without key", runCmd{Listen: ":8080", TLSListen: ":8443", TLSCert: "c"}, errTLSPair, ""},
		{"pair without listener", runCmd{Listen: ":8080", TLSCert: "c", TLSKey: "k"}, errTLSPair, ""},
		{"bad peer", runCmd{Listen: ":8080", ProxyProtocolFrom: []string{"10.0.0.0/33"}}, httpparse.ErrProxyPeer, ""},
		{"TLS listener", runCmd{Listen: ":8080", TLSListen: ":8443", TLSCert: "c", TLSKey: "k"}, nil, ""},
		{"TLS listener only", runCmd{TLSListen: ":8443", TLSCert: "c", TLSKey: "k"}, nil, ""},
		{"no listener", runCmd{}, errNoListener, ""},
		{"PROXY peers", runCmd{Listen: ":8080", ProxyProtocolFrom: []string{"10.0.0.0/8", " 192.0.2.7"}}, nil, "10.0.0.0/8,192.0.2.7/32"},
		{"compress", runCmd{Listen: ":8080", Compress: true}, nil, ""},
	} {
		peers, err := c.r.checkClientSide()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if got := peers.String(); err == nil && got != c.peers {
			t.Errorf("%s: peers %q, want %q", c.name, got, c.peers)
		}
	}
}
