package observability

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/proxyto/proxyto/engine"
)

// appendAccessJSON appends r's access line as zap's JSON encoder would write
// it with this package's configuration ({"level","ts","msg", then the access
// fields}), without going through zap's field machinery: one access line per
// request is the hot path of logging, and this costs a fraction of it.
// Tests hold the two encodings to the same output.
func appendAccessJSON(dst []byte, a *accessLine, now time.Time) []byte {
	dst = append(dst, `{"level":"info","ts":"`...)
	dst = now.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","msg":"access","client":"`...)
	if a.Client.IsValid() {
		dst = a.Client.AppendTo(dst)
	}
	k := a.Kind
	if k >= engine.NumKinds {
		k = engine.KindHTTP
	}
	dst = append(dst, `","kind":"`...)
	dst = append(dst, k.String()...)
	dst = append(dst, `","method":`...)
	dst = appendJSONString(dst, a.Method)
	dst = append(dst, `,"target":`...)
	dst = appendJSONString(dst, redactTarget(a.Target))
	dst = append(dst, `,"upstream":`...)
	dst = appendJSONString(dst, redactUpstream(a.Upstream))
	if a.route != "" {
		dst = append(dst, `,"route":`...)
		dst = appendJSONString(dst, []byte(a.route))
	}
	if a.user != "" {
		dst = append(dst, `,"user":`...)
		dst = appendJSONString(dst, []byte(a.user))
	}
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(a.Status), 10)
	dst = append(dst, `,"bytes_in":`...)
	dst = strconv.AppendInt(dst, a.BytesIn, 10)
	dst = append(dst, `,"bytes_out":`...)
	dst = strconv.AppendInt(dst, a.BytesOut, 10)
	dst = append(dst, `,"duration":`...)
	dst = appendMillis(dst, a.Duration)
	dst = append(dst, `,"error":"`...)
	dst = append(dst, clampType(a.Error).String()...)
	dst = append(dst, '"')
	if a.Detail != "" {
		dst = append(dst, `,"detail":`...)
		dst = appendJSONString(dst, []byte(redactDetail(a.Detail)))
	}
	return append(dst, "}\n"...)
}

// appendMillis writes d as fractional milliseconds, as floatMillis does.
func appendMillis(dst []byte, d time.Duration) []byte {
	return strconv.AppendFloat(dst, float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

// appendJSONString writes s as a JSON string, escaping like zap: quotes,
// backslashes and control bytes escaped, invalid UTF-8 as \ufffd.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' && s[j] < utf8.RuneSelf {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
