//go:build !race

package proxystatus_test

import (
	"testing"

	"github.com/proxyto/proxyto/proxystatus"
)

func TestAppendResponseAllocs(t *testing.T) {
	tests := []struct {
		name       string
		e          *proxystatus.Error
		extra      string
		wantAllocs float64
	}{
		{"plain", proxystatus.New(proxystatus.DNSError, "upstream name does not resolve"), "", 0},
		{"no detail", &proxystatus.Error{Type: proxystatus.ConnectionTimeout}, "", 0},
		{"received-status and extra", &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: `say "no" \ please`}, "Retry-After: 1\r\n", 0},
		{"hostile", proxystatus.New(proxystatus.ConnectionRefused, "a\r\nb: c\x00é"), "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, 0, 1024)
			got := testing.AllocsPerRun(100, func() {
				buf = proxystatus.AppendResponse(buf[:0], tt.e, tt.extra)
			})
			if got != tt.wantAllocs {
				t.Errorf("AppendResponse into a pre-sized buffer: %v allocs, want %v", got, tt.wantAllocs)
			}
		})
	}
}
