package engine

import (
	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/routes"
)

// Choosing where a request goes, once its head is parsed: the client's
// credentials (checked, and with a routes file split into user, route and
// session), then the upstreams in the order the request tries them.
//
//	X-Proxy-To: a, b        the list as written, health applied (health.Order)
//	X-Proxy-To: @name       the route, in its strategy's order (Route.Pick)
//	username -route-name    likewise, when X-Proxy-To is absent
//	neither                 the routes file's default_route, then
//	                        --default-upstream, else 400
//
// Everything here runs on the loop over the parsed head: one atomic load of
// the routes table, no lock, no allocation.

// choose fills ups with the upstreams of the request whose head is in buf,
// and the access record with its route and user. On error the request is
// answered with the returned error, and ups must be released.
func (cc *clientConn) choose(buf []byte, ups *upstreams) *proxystatus.Error {
	e, ls, r := cc.e, cc.ls, &cc.ls.req
	switch {
	case r.XProxyToCount > 1:
		return proxystatus.New(proxystatus.HTTPRequestError, "X-Proxy-To given more than once")
	case r.XProxySessionCount > 1:
		return proxystatus.New(proxystatus.HTTPRequestError, "X-Proxy-Session given more than once")
	}
	var ref []byte // "@name": the route X-Proxy-To names
	if r.XProxyToCount == 1 {
		v := r.XProxyTo.Bytes(buf)
		if name, ok := routes.RouteRef(v); ok {
			// Checked first: "@name" would parse as an upstream whose
			// user is empty.
			ref = name
		} else {
			l := ls.getList()
			if err := l.Parse(v); err != nil {
				ls.putList(l)
				return proxystatus.New(proxystatus.HTTPRequestError, "bad X-Proxy-To: "+parseDetail(err))
			}
			ups.list, ups.own = l, true
		}
	}

	sel, pe := cc.credentials(buf, ups)
	if pe != nil {
		return pe
	}
	session := sel.Session
	if r.XProxySessionCount == 1 {
		k, err := routes.SessionHeader(r.XProxySession.Bytes(buf))
		if err != nil {
			return selectError(err)
		}
		session = k // the header wins over the username's -session-
	}

	if ups.list == nil {
		var tab *routes.Table
		if e.cfg.Routes != nil {
			tab = e.cfg.Routes.Table()
		}
		rt, err := tab.Select(ref, sel.Route)
		switch {
		case err != nil:
			return selectError(err)
		case rt != nil:
			ups.route = rt
			cc.rec.route = rt.ID()
			ups.n = len(rt.Pick(ups.ord[:], session, e.health.Now()))
			return nil
		case e.defaultList != nil:
			ups.list = e.defaultList
		default:
			return proxystatus.New(proxystatus.HTTPRequestError, "missing X-Proxy-To header")
		}
	}
	ups.n = ls.orderList(ups.list, ups.ord[:])
	return nil
}

// credentials checks the client's Proxy-Authorization when client
// authentication is on, and with a routes file splits its username into
// user, route and session. Without a routes file the username is taken
// whole, so existing credentials keep working whatever they hold. An
// unauthenticated client gets errAuthRequired; credentials only VerifyUser
// can judge (bcrypt) go into ups, for the dial job to check off the loop.
func (cc *clientConn) credentials(buf []byte, ups *upstreams) (routes.Selection, *proxystatus.Error) {
	e, r := cc.e, &cc.ls.req
	var sel routes.Selection
	if e.cfg.Auth == nil && e.cfg.Routes == nil {
		return sel, nil
	}
	var pass []byte
	ok := false
	if r.HasProxyAuth {
		sel.User, pass, ok = auth.DecodeBasic(r.ProxyAuthorization.Bytes(buf), cc.ls.cred[:])
	}
	if ok && e.cfg.Routes != nil {
		s, err := routes.ParseUsername(sel.User)
		if err != nil {
			return sel, selectError(err)
		}
		sel = s
	}
	a := e.cfg.Auth
	if a == nil {
		return sel, nil
	}
	if !ok {
		return sel, errAuthRequired
	}
	good, known := a.CachedUser(sel.User, pass)
	if known && !good {
		return sel, errAuthRequired
	}
	if !known {
		// Verified off the loop, in the dial job. A user has no colon
		// (Basic splits at the first one), so "user:pass" splits back.
		ups.authSeen = append(append(append(ups.authSeen[:0], sel.User...), ':'), pass...)
	}
	// Counted as this user from here; a failed VerifyUser takes it back
	// (clientConn.fail).
	cc.rec.user = a.UserID(sel.User)
	return sel, nil
}

// selectError is the answer to a failed route selection (400).
func selectError(err error) *proxystatus.Error {
	if se, ok := err.(*routes.SelectError); ok {
		return se.Response()
	}
	return proxystatus.New(proxystatus.HTTPRequestError, "bad route selection")
}

// orderList writes into ord the order in which the entries of an
// X-Proxy-To list (or --default-upstream) are tried: as written, with
// ejected upstreams skipped (health.Order). It returns the number of
// attempts. A single upstream is tried whatever its health, so it costs
// nothing here.
func (ls *loopState) orderList(l *httpparse.UpstreamList, ord []int) int {
	list := l.Upstreams()
	if len(list) == 1 {
		ord[0] = 0
		return 1
	}
	tr := ls.e.health
	keys := ls.keys[:len(list)]
	for i := range list {
		keys[i] = tr.Key(&list[i])
	}
	states := tr.States(ls.states[:], keys)
	n := len(health.Order(ord, states, 0, tr.Now()))
	clear(ls.states[:]) // hold no state past the request
	return n
}
