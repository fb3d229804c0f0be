package routes_test

import (
	"encoding/base64"
	"fmt"

	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/routes"
)

// The request path as the engine runs it: on the loop, decode the
// credentials once, split the username, select the route, pick the
// upstreams; off the loop, report each attempt's outcome.
func Example() {
	tracker := health.New(health.Config{EjectAfter: 3})
	holder := routes.NewHolder(tracker)
	tab, err := routes.Parse([]byte(`
routes:
  residential:
    strategy: sticky
    upstreams: ["http://u:p@10.0.0.1:3128", "http://u:p@10.0.0.2:3128", "socks5h://u:p@10.0.0.3:1080"]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := holder.Store(tab); err != nil { // SIGHUP: holder.Reload(path)
		fmt.Println(err)
		return
	}

	// On the event loop, per request.
	value := []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("alice-route-residential-session-s42:pw")))
	var buf [auth.MaxCredentials]byte
	user, _, _ := auth.DecodeBasic(value, buf[:])
	sel, err := routes.ParseUsername(user)
	if err != nil {
		fmt.Println(err) // a *routes.SelectError: answer its Response(), a 400
		return
	}
	// With client authentication on: Basic.CachedUser(sel.User, pass).
	r, err := holder.Table().Select(nil, sel.Route) // nil: no "X-Proxy-To: @name"
	if err != nil {
		fmt.Println(err)
		return
	}
	var idx [8]int
	order := r.Pick(idx[:], sel.Session, tracker.Now())
	fmt.Printf("user %s, route %s (id %d), %d upstreams to try\n", sel.User, r.Name(), r.ID(), len(order))

	// Off the loop, after each attempt: a failure that counts (health.Counts)
	// or a success.
	first := order[0]
	for range 3 {
		if tracker.Report(r.Key(first), false) == health.NowEjected {
			fmt.Println("ejected: count it for route", r.ID())
		}
	}
	again := r.Pick(idx[:], sel.Session, tracker.Now())
	fmt.Println("first choice moved:", again[0] != first, "- still tried:", len(again))
	// Output:
	// user alice, route residential (id 0), 3 upstreams to try
	// ejected: count it for route 0
	// first choice moved: true - still tried: 2
}
