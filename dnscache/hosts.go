package dnscache

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxHostsSize bounds the hosts file read.
const maxHostsSize = 4 << 20

// hostsFile is /etc/hosts, re-read when its modification time or size
// changes (checked at most every hostsRecheck).
type hostsFile struct {
	path string

	mu      sync.Mutex
	checked int64
	read    bool
	mtime   time.Time
	size    int64

	names atomic.Pointer[map[string][]netip.Addr] // folded name → addresses, in file order
}

// lookup returns the addresses the hosts file gives name (folded, without
// a final dot), or nil.
func (h *hostsFile) lookup(name string, now int64) []netip.Addr {
	h.refresh(now)
	if m := h.names.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

func (h *hostsFile) refresh(now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.read && now-h.checked < int64(hostsRecheck) {
		return
	}
	h.checked, h.read = now, true
	fi, err := os.Stat(h.path)
	if err != nil {
		h.names.Store(nil)
		h.mtime, h.size = time.Time{}, 0
		return
	}
	if fi.ModTime().Equal(h.mtime) && fi.Size() == h.size && h.names.Load() != nil {
		return
	}
	h.mtime, h.size = fi.ModTime(), fi.Size()
	data, err := os.ReadFile(h.path)
	if err != nil || len(data) > maxHostsSize {
		h.names.Store(nil)
		return
	}
	m := parseHosts(data)
	h.names.Store(&m)
}

// parseHosts reads "address name [alias ...]" lines; '#' starts a comment.
// Lines with an address that does not parse are skipped, as the C library
// does.
func parseHosts(data []byte) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, name := range f[1:] {
			name = strings.TrimSuffix(asciiLower(name), ".")
			if name != "" && !contains(m[name], a) {
				m[name] = append(m[name], a)
			}
		}
	}
	return m
}

func contains(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if a == b {
			return true
		}
	}
	return false
}

// asciiLower folds ASCII letters only, as fold does for lookups.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
