package observability

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// TestAccessJSONMatchesZap holds the hand-written access-line encoder to what
// zap's JSON encoder writes for the same record, field for field.
func TestAccessJSONMatchesZap(t *testing.T) {
	records := []engine.Record{
		{Kind: engine.KindConnect, Client: netip.MustParseAddrPort("127.0.0.1:5000"), Method: []byte("CONNECT"),
			Target: []byte("example.com:443"), Upstream: []byte("10.0.0.1:3128"), Status: 200,
			BytesIn: 123, BytesOut: 4567, Duration: 1500 * time.Microsecond},
		{Kind: engine.KindHTTP, Client: netip.MustParseAddrPort("[::1]:6000"), Method: []byte("GET"),
			Target: []byte("http://u:p@host/a?b=\"c\"\\d\x01\x7f"), Upstream: []byte("u:p@up:1"), Status: 502,
			Duration: 3 * time.Second, Error: proxystatus.ConnectionRefused, Detail: "dial alice:pw@up:3128 failed\n"},
		{Kind: engine.KindUpgrade, Method: []byte("GET"), Target: []byte("/ws \xff\xfe ü"), Error: proxystatus.Type(proxystatus.NumTypes + 3)},
		{Kind: engine.KindConnect, Method: []byte("CONNECT"), Target: []byte("example.com:443"), Status: 200, Route: 0, User: 0},
	}
	names := [][2]string{{"", ""}, {"residential", ""}, {"", "alice"}, {"eu.scrape-1", "bob \"b\""}}
	for i := range records {
		r := &accessLine{Record: &records[i], route: names[i][0], user: names[i][1]}
		var zapOut bytes.Buffer
		log, ws, err := newLogger(Options{Output: &zapOut})
		if err != nil {
			t.Fatal(err)
		}
		log.Info("access", zap.Inline(r))
		_ = ws.Stop()
		fast := appendAccessJSON(nil, r, time.Now())
		var want, got map[string]any
		if err := json.Unmarshal(zapOut.Bytes(), &want); err != nil {
			t.Fatalf("record %d: zap line %q: %v", i, zapOut.Bytes(), err)
		}
		if err := json.Unmarshal(fast, &got); err != nil {
			t.Fatalf("record %d: fast line %q: %v", i, fast, err)
		}
		delete(want, "ts")
		delete(got, "ts")
		if !reflect.DeepEqual(want, got) {
			t.Errorf("record %d:\nzap:  %s\nfast: %s", i, zapOut.Bytes(), fast)
		}
		if fast[len(fast)-1] != '\n' {
			t.Errorf("record %d: line does not end in a newline", i)
		}
	}
}

// TestAsyncWriterDropsPastMax checks the log sink never grows past its cap.
func TestAsyncWriterDropsPastMax(t *testing.T) {
	var out bytes.Buffer
	w := newAsyncWriter(&out, time.Hour, 10)
	for range 5 {
		_, _ = w.Write([]byte("abcd"))
	}
	if got := w.dropped.Load(); got != 3 {
		t.Fatalf("dropped %d lines, want 3", got)
	}
	_ = w.Stop()
	if out.String() != "abcdabcd" {
		t.Fatalf("wrote %q", out.String())
	}
}
