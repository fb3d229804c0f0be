package main

import (
	"errors"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

func TestCheckClientSide(t *testing.T) {
	for _, c := range []struct {
		name string
		r    runCmd
		want error
	}{
		{"none", runCmd{}, nil},
		{"listener without pair", runCmd{TLSListen: ":8443"}, errTLSPair},
		{"cert without key", runCmd{TLSListen: ":8443", TLSCert: "c"}, errTLSPair},
		{"pair without listener", runCmd{TLSCert: "c", TLSKey: "k"}, errTLSPair},
		{"bad peer", runCmd{ProxyProtocolFrom: []string{"10.0.0.0/33"}}, httpparse.ErrProxyPeer},
		{"TLS listener", runCmd{TLSListen: ":8443", TLSCert: "c", TLSKey: "k"}, errClientSideNotWired},
		{"PROXY peers", runCmd{ProxyProtocolFrom: []string{"10.0.0.0/8"}}, errClientSideNotWired},
		{"compress", runCmd{Compress: true}, errClientSideNotWired},
	} {
		if err := c.r.checkClientSide(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
