package observability

import (
	"strings"
	"testing"
	"time"
)

// TestDurCarriesUnit checks that a duration logged with Dur says its unit in
// both log formats.
func TestDurCarriesUnit(t *testing.T) {
	for _, c := range []struct {
		format string
		want   string
	}{
		{"json", `"drain_timeout":"30s"`},
		{"console", "\"drain_timeout\": \"30s\""},
	} {
		s, buf := newTestStack(t, Options{LogFormat: c.format})
		s.Logger().Info("draining", Dur("drain_timeout", 30*time.Second))
		flush(t, s)
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("%s: %q lacks %s", c.format, buf.String(), c.want)
		}
	}
}
