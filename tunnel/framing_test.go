package tunnel

import (
	"errors"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

func TestFraming(t *testing.T) {
	tests := []struct {
		name    string
		f       Framing
		input   string
		want    string // message bytes taken
		done    bool
		wantErr error
	}{
		{"length exact", Length(5), "hello", "hello", true, nil},
		{"length with the next message behind", Length(5), "helloGET /", "hello", true, nil},
		{"length short", Length(10), "hello", "hello", false, nil},
		{"zero length is empty", Length(0), "GET /", "", true, nil},
		{"empty", Empty(), "GET /", "", true, nil},
		{"unlimited", Unlimited(), "anything at all", "anything at all", false, nil},
		{"chunked whole", Chunked(), "5\r\nhello\r\n0\r\n\r\nGET /", "5\r\nhello\r\n0\r\n\r\n", true, nil},
		{"chunked with trailers", Chunked(), "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", true, nil},
		{"chunked partial", Chunked(), "5\r\nhel", "5\r\nhel", false, nil},
		{"chunked malformed", Chunked(), "zz\r\n", "", false, httpparse.ErrBadChunkLine},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 1 << 20} {
			t.Run(tt.name, func(t *testing.T) {
				f := tt.f
				var got strings.Builder
				done := f.Done()
				in := tt.input
				var err error
				for len(in) > 0 && !done && err == nil {
					k := min(step, len(in))
					var n int
					n, done, err = f.Take([]byte(in[:k]))
					got.WriteString(in[:n])
					if n < k && !done && err == nil {
						t.Fatalf("step %d: took %d of %d bytes without ending", step, n, k)
					}
					in = in[n:]
				}
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("step %d: error %v, want %v", step, err, tt.wantErr)
					}
					return
				}
				if err != nil || got.String() != tt.want || done != tt.done || f.Done() != tt.done {
					t.Fatalf("step %d: took %q done %v (Done %v) err %v; want %q done %v", step, got.String(), done, f.Done(), err, tt.want, tt.done)
				}
			})
		}
	}
}
