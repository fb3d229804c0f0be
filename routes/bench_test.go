package routes

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/proxyto/proxyto/auth"
)

// selectFixture is the request-path work the engine does for a route:
// decode Proxy-Authorization, split the username, find the route, pick.
type selectFixture struct {
	h     *Holder
	value []byte
	ref   []byte
	buf   [auth.MaxCredentials]byte
	dst   [8]int
}

func newSelectFixture(tb testing.TB, strategy string, entries int) *selectFixture {
	h, _ := stored(tb, routeFile("residential", strategy, entries))
	eject(tb, h, route(tb, h, "residential"), 1)
	return &selectFixture{
		h:     h,
		value: []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("alice-route-residential-session-s42:secret"))),
		ref:   []byte(" @residential"),
	}
}

// byUsername is the browser path: everything comes from the username.
func (f *selectFixture) byUsername() int {
	user, _, ok := auth.DecodeBasic(f.value, f.buf[:])
	if !ok {
		panic("decode")
	}
	sel, err := ParseUsername(user)
	if err != nil {
		panic(err)
	}
	r, err := f.h.Table().Select(nil, sel.Route)
	if err != nil {
		panic(err)
	}
	return len(r.Pick(f.dst[:], sel.Session, f.h.Tracker().Now()))
}

// byHeader is the X-Proxy-To: @name path with an X-Proxy-Session header.
func (f *selectFixture) byHeader() int {
	name, _ := RouteRef(f.ref)
	session, err := SessionHeader([]byte(" s42"))
	if err != nil {
		panic(err)
	}
	r, err := f.h.Table().Select(name, nil)
	if err != nil {
		panic(err)
	}
	return len(r.Pick(f.dst[:], session, f.h.Tracker().Now()))
}

func BenchmarkSelect(b *testing.B) {
	for _, strategy := range []string{"failover", "round-robin", "random", "sticky"} {
		for _, n := range []int{4, 16, 64, 256} {
			f := newSelectFixture(b, strategy, n)
			b.Run(fmt.Sprintf("username/%s/%d", strategy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f.byUsername()
				}
			})
			b.Run(fmt.Sprintf("header/%s/%d", strategy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f.byHeader()
				}
			})
		}
	}
}

func BenchmarkParseUsername(b *testing.B) {
	u := []byte("customer-alice-route-residential-eu-session-3f2a9c")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseUsername(u)
	}
}

func BenchmarkLookup(b *testing.B) {
	h, _ := stored(b, routeFile("residential", "failover", 1))
	name := []byte("residential")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = h.Table().Lookup(name)
	}
}
