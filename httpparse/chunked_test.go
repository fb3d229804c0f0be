package httpparse

import (
	"errors"
	"strings"
	"testing"
)

func TestChunkScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string // body; anything after it must be left alone
		want error  // nil: a complete body
	}{
		{"last chunk only", "0||", nil},
		{"one chunk", "5|hello|0||", nil},
		{"hex sizes", "a|0123456789|A|0123456789|0||", nil},
		{"leading zeros", "0005|hello|000||", nil},
		{"extensions", "5;a=b;c=\"d e\"|hello|0;x||", nil},
		{"BWS before extension", "5 \t;a|hello|0 ||", nil},
		{"trailers", "5|hello|0|X-Sum: 1|Y:|Z: a b||", nil},
		{"data holding CRLF", "4|\r\n\r\n|0||", nil},

		{"empty size", "|hello|0||", ErrBadChunkLine},
		{"non-hex size", "g|", ErrBadChunkLine},
		{"negative size", "-5|hello|0||", ErrBadChunkLine},
		{"space before size", " 5|hello|0||", ErrBadChunkLine},
		{"17 hex digits", "00000000000000001|x|0||", ErrBadChunkLine},
		{"over 2^62", "4000000000000001|", ErrBadChunkLine},
		{"bare LF size line", "5\nhello|0||", ErrBadChunkLine},
		{"bare CR size line", "5\rhello|0||", ErrBadChunkLine},
		{"NUL in extension", "5;a\x00|hello|0||", ErrBadChunkLine},
		{"junk after size", "5x|hello|0||", ErrBadChunkLine},
		{"junk after BWS", "5 x|hello|0||", ErrBadChunkLine},
		{"long extension", "5;" + strings.Repeat("a", MaxChunkLine) + "|hello|0||", ErrChunkLineTooLong},
		{"data too long", "5|hello!|0||", ErrBadChunkEnd},
		{"data bare LF", "5|hello\n0||", ErrBadChunkEnd},
		{"data CR without LF", "5|hello\r0||", ErrBadChunkEnd},
		{"trailer obs-fold", "0|X: a| b||", ErrBadTrailer},
		{"trailer no colon", "0|X||", ErrBadTrailer},
		{"trailer space before colon", "0|X : a||", ErrBadTrailer},
		{"trailer NUL", "0|X: \x00||", ErrBadTrailer},
		{"trailer bare LF", "0|X: a\n|", ErrBadTrailer},
		{"final bare LF", "0\r\n\n", ErrBadTrailer},
		{"trailer too long", "0|X: " + strings.Repeat("a", MaxTrailerBytes) + "||", ErrChunkLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := crlf(tt.in)
			in := append(body, "NEXT"...)
			// Feed the input split at every position (every few for the
			// long ones), and byte by byte.
			step := max(1, len(in)/512)
			for split := 0; split <= len(in); split += step {
				n, done, err := scanSplit(in, split)
				check(t, split, body, n, done, err, tt.want)
			}
			n, done, err := scanBytewise(in)
			check(t, -1, body, n, done, err, tt.want)
		})
	}
}

func check(t *testing.T, split int, body []byte, n int, done bool, err, want error) {
	t.Helper()
	if want != nil {
		if !errors.Is(err, want) {
			t.Fatalf("split %d: err %v, want %v", split, err, want)
		}
		return
	}
	if err != nil || !done || n != len(body) {
		t.Fatalf("split %d: n %d done %v err %v; want n %d done", split, n, done, err, len(body))
	}
}

// scanSplit scans in as two writes split at split, returning total bytes
// consumed.
func scanSplit(in []byte, split int) (int, bool, error) {
	var s ChunkScanner
	n1, done, err := s.Scan(in[:split])
	if err != nil || done {
		return n1, done, err
	}
	n2, done, err := s.Scan(in[split:])
	return n1 + n2, done, err
}

func scanBytewise(in []byte) (int, bool, error) {
	var s ChunkScanner
	total := 0
	for i := range in {
		n, done, err := s.Scan(in[i : i+1])
		total += n
		if err != nil || done {
			return total, done, err
		}
	}
	return total, false, nil
}

func TestChunkScannerDoneAndReset(t *testing.T) {
	var s ChunkScanner
	if n, done, err := s.Scan(crlf("0||")); n != 5 || !done || err != nil || !s.Done() {
		t.Fatalf("%d %v %v", n, done, err)
	}
	if n, done, err := s.Scan([]byte("more")); n != 0 || !done || err != nil {
		t.Fatalf("after done: %d %v %v", n, done, err)
	}
	s.Reset()
	if n, done, err := s.Scan(crlf("1|x|")); n != 6 || done || err != nil {
		t.Fatalf("after Reset: %d %v %v", n, done, err)
	}
	// A size line at exactly the limit passes.
	s.Reset()
	line := "1;" + strings.Repeat("a", MaxChunkLine-2)
	if _, _, err := s.Scan(crlf(line + "|x|0||")); err != nil {
		t.Fatalf("limit-sized line: %v", err)
	}
}

func TestChunkScannerHugeChunk(t *testing.T) {
	var s ChunkScanner
	n, done, err := s.Scan(crlf("4000000000000000|"))
	if n != 18 || done || err != nil {
		t.Fatalf("%d %v %v", n, done, err)
	}
	data := make([]byte, 1<<16)
	if n, _, err := s.Scan(data); n != len(data) || err != nil {
		t.Fatalf("%d %v", n, err)
	}
}
