package main

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorLine(t *testing.T) {
	inner := errors.New("proxyto: X-Proxy-To element 0: unknown X-Proxy-To scheme")
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("boom"), "proxyto: boom"},
		{errors.New("proxyto: boom"), "proxyto: boom"},
		{fmt.Errorf("proxyto: --default-upstream: %w", inner), "proxyto: --default-upstream: X-Proxy-To element 0: unknown X-Proxy-To scheme"},
		{fmt.Errorf("admin listener: %w", fmt.Errorf("proxyto: a: %w", inner)), "proxyto: admin listener: a: X-Proxy-To element 0: unknown X-Proxy-To scheme"},
	} {
		if got := errorLine(c.err); got != c.want {
			t.Errorf("errorLine(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
