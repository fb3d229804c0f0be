package httpparse

// Limits of ChunkScanner.
const (
	MaxChunkLine    = 4095     // longest chunk-size line, extensions included, CRLF excluded (as net/http)
	MaxTrailerBytes = 16 << 10 // bytes of the whole trailer section
	maxChunkSize    = 1 << 62  // larger sizes are refused
	maxChunkDigits  = 16       // as net/http: more hex digits are refused even if zero
)

// chunkState is where a ChunkScanner is in the chunked grammar
// (RFC 9112 §7.1).
type chunkState uint8

const (
	csSizeStart    chunkState = iota // before the first hex digit of a chunk-size
	csSize                           // in the hex digits
	csSizeBWS                        // BWS after the digits, before ';' or CRLF
	csExt                            // in chunk extensions, after ';'
	csSizeLF                         // saw CR of the size line
	csData                           // in chunk data; remaining bytes left
	csDataCR                         // after chunk data, want CR
	csDataLF                         // after chunk data and CR, want LF
	csTrailerStart                   // at the start of a trailer line (or the final CRLF)
	csTrailerName                    // in a trailer field name
	csTrailerValue                   // in a trailer field value
	csTrailerLF                      // saw CR of a trailer line
	csEndLF                          // saw CR of the final empty line
	csDone                           // last-chunk and trailer section consumed
)

// ChunkScanner follows a chunked body (RFC 9112 §7.1) as it streams through
// unchanged, to learn where it ends. The zero value is ready; Reset readies
// it for the next body. It does not allocate. Not safe for concurrent use.
type ChunkScanner struct {
	state     chunkState
	remaining uint64 // data bytes left in the current chunk; the size while in its line
	digits    int    // hex digits of the current chunk-size
	line      int    // bytes of the current size line, or of the trailer section
}

// Reset readies s for a new body.
func (s *ChunkScanner) Reset() { *s = ChunkScanner{} }

// Done reports whether the body has ended.
func (s *ChunkScanner) Done() bool { return s.state == csDone }

// Scan consumes the next bytes of a chunked body. p may be split anywhere:
// state carries over between calls. n is how many leading bytes of p belong
// to the body; done is true once the last chunk and the trailer section have
// been consumed, in which case p[n:] belongs to the next message. After
// done, Scan returns 0, true, nil. A non-nil err (ErrBadChunkLine,
// ErrBadChunkEnd, ErrChunkLineTooLong, ErrBadTrailer) is final; n then counts
// the bytes before the bad one.
func (s *ChunkScanner) Scan(p []byte) (n int, done bool, err error) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch s.state {
		case csSizeStart, csSize:
			if v := unhexTable[c]; v != 0xff {
				s.digits++
				if s.digits > maxChunkDigits {
					return i, false, ErrBadChunkLine
				}
				s.remaining = s.remaining<<4 | uint64(v)
				if s.remaining > maxChunkSize {
					return i, false, ErrBadChunkLine
				}
				s.state = csSize
				break
			}
			if s.state == csSizeStart {
				return i, false, ErrBadChunkLine
			}
			switch c {
			case ' ', '\t':
				s.state = csSizeBWS
			case ';':
				s.state = csExt
			case '\r':
				s.state = csSizeLF
			default:
				return i, false, ErrBadChunkLine
			}
		case csSizeBWS:
			switch c {
			case ' ', '\t':
			case ';':
				s.state = csExt
			case '\r':
				s.state = csSizeLF
			default:
				return i, false, ErrBadChunkLine
			}
		case csExt:
			if c == '\r' {
				s.state = csSizeLF
			} else if !valueTable[c] {
				return i, false, ErrBadChunkLine
			}
		case csSizeLF:
			if c != '\n' {
				return i, false, ErrBadChunkLine
			}
			s.line, s.digits = 0, 0
			if s.remaining == 0 {
				s.state = csTrailerStart
			} else {
				s.state = csData
			}
			i++
			continue
		case csData:
			k := uint64(len(p) - i)
			if k > s.remaining {
				k = s.remaining
			}
			i += int(k)
			s.remaining -= k
			if s.remaining == 0 {
				s.state = csDataCR
			}
			continue
		case csDataCR:
			if c != '\r' {
				return i, false, ErrBadChunkEnd
			}
			s.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return i, false, ErrBadChunkEnd
			}
			s.state, s.line = csSizeStart, 0
			i++
			continue
		case csTrailerStart:
			switch {
			case c == '\r':
				s.state = csEndLF
			case tokenTable[c]:
				s.state = csTrailerName
			default:
				return i, false, ErrBadTrailer // obs-fold, bare LF, empty name
			}
		case csTrailerName:
			if c == ':' {
				s.state = csTrailerValue
			} else if !tokenTable[c] {
				return i, false, ErrBadTrailer
			}
		case csTrailerValue:
			if c == '\r' {
				s.state = csTrailerLF
			} else if !valueTable[c] {
				return i, false, ErrBadTrailer
			}
		case csTrailerLF:
			if c != '\n' {
				return i, false, ErrBadTrailer
			}
			s.state = csTrailerStart
		case csEndLF:
			if c != '\n' {
				return i, false, ErrBadTrailer
			}
			s.state = csDone
			return i + 1, true, nil
		case csDone:
			return 0, true, nil
		}
		// One byte of a size line (CR excluded) or of the trailer
		// section consumed: bound both.
		i++
		switch {
		case s.state <= csExt:
			if s.line++; s.line > MaxChunkLine {
				return i - 1, false, ErrChunkLineTooLong
			}
		case s.state >= csTrailerStart:
			if s.line++; s.line > MaxTrailerBytes {
				return i - 1, false, ErrChunkLineTooLong
			}
		}
	}
	return i, s.state == csDone, nil
}
