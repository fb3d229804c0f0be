package httpparse

import (
	"bytes"
	"io"
	"net/http/httputil"
	"testing"
)

// dechunk runs ScanData over body fed in pieces of size step and returns the
// data, the bytes consumed and whether the body ended.
func dechunk(body []byte, step int) (data []byte, consumed int, done bool, err error) {
	var s ChunkScanner
	for consumed < len(body) && !done {
		end := min(len(body), consumed+step)
		piece := body[consumed:end]
		for len(piece) > 0 && !done {
			var n int
			var d []byte
			n, d, done, err = s.ScanData(piece)
			data = append(data, d...)
			consumed += n
			piece = piece[n:]
			if err != nil {
				return data, consumed, done, err
			}
		}
	}
	return data, consumed, done, nil
}

func TestScanData(t *testing.T) {
	body := []byte("1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\nNEXT")
	for step := 1; step <= len(body); step++ {
		data, n, done, err := dechunk(body, step)
		if err != nil || !done || n != len(body)-len("NEXT") || string(data) != "abcdefghijklmnopqrstuvwxyz0123456789abcdef" {
			t.Fatalf("step %d: data %q n %d done %v err %v", step, data, n, done, err)
		}
	}
	if _, _, _, err := dechunk([]byte("zz\r\n"), 3); err != ErrBadChunkLine {
		t.Errorf("bad size line: %v", err)
	}
	if _, _, _, err := dechunk([]byte("2\r\nabX"), 4); err != ErrBadChunkEnd {
		t.Errorf("bad chunk end: %v", err)
	}
}

// FuzzScanData compares ScanData with httputil.NewChunkedReader, as
// FuzzChunked does for Scan, and with Scan itself: both must consume the
// same bytes.
func FuzzScanData(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		data, n, done, err := dechunk(body, int(step)+1)
		var s ChunkScanner
		sn, sdone, serr := s.Scan(body)
		if n != sn || done != sdone || (err == nil) != (serr == nil) {
			t.Fatalf("ScanData: n %d done %v err %v; Scan: n %d done %v err %v", n, done, err, sn, sdone, serr)
		}
		if !done || err != nil {
			return
		}
		want, rerr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body[:n])))
		if rerr == nil && !bytes.Equal(data, want) {
			t.Fatalf("data %q, httputil %q", data, want)
		}
	})
}
