package main

import (
	"strings"

	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/observability"
	"github.com/proxyto/proxyto/routes"
)

// reloader re-reads the configuration files on SIGHUP. Each file either
// loads whole and takes effect for new requests, or fails and keeps what
// was in force; requests in flight finish with what they started with, and
// no connection is dropped. One reload (one SIGHUP) counts once in
// proxyto_config_reloads_total: result "error" when any file failed.
type reloader struct {
	routesPath string
	routes     *routes.Holder // nil without --routes
	htpasswd   string
	auth       *auth.Holder // nil without client authentication
	tls        tlsReloader  // the engine; nil until it started
	tlsCert    string       // --tls-cert; empty without a TLS listener

	obs *observability.Stack
}

// tlsReloader reads the TLS listener's pair again (engine.Engine).
type tlsReloader interface{ ReloadTLS() error }

// reload runs on the main goroutine, never on an event loop.
func (rl *reloader) reload() {
	ok := true
	if rl.routes != nil {
		if err := rl.routes.Reload(rl.routesPath); err != nil {
			ok = false
			rl.obs.Logger().Error("reload: routes file failed to load; the previous routes stay in force", observability.Err(err))
		} else {
			rl.obs.Logger().Info("reload: routes file loaded", observability.Str("file", rl.routesPath),
				observability.Strs("routes", routeNames(rl.routes.Table())))
		}
	}
	if rl.auth != nil && rl.htpasswd != "" {
		if err := rl.auth.Reload(); err != nil {
			ok = false
			rl.obs.Logger().Error("reload: htpasswd file failed to load; the previous credentials stay in force", observability.Err(err))
		} else {
			rl.obs.Logger().Info("reload: htpasswd file loaded", observability.Str("file", rl.htpasswd))
			rl.warnUserNames()
		}
	}
	if rl.tls != nil && rl.tlsCert != "" {
		if err := rl.tls.ReloadTLS(); err != nil {
			ok = false
			rl.obs.Logger().Error("reload: TLS certificate and key failed to load; the previous pair stays in use", observability.Err(err))
		} else {
			rl.obs.Logger().Info("reload: TLS certificate and key loaded", observability.Str("file", rl.tlsCert))
		}
	}
	if rl.routes == nil && (rl.auth == nil || rl.htpasswd == "") && rl.tlsCert == "" {
		rl.obs.Logger().Info("reload: no routes, htpasswd or TLS files to read again")
	}
	if a := rl.obs.Accounting(); a != nil {
		a.ConfigReloaded(ok)
	}
}

// warnUserNames warns about configured users whose names hold "-route-" or
// "-session-": with a routes file, a username ends at the first of them, so
// such a user can no longer authenticate.
func (rl *reloader) warnUserNames() {
	if rl.routes == nil || rl.auth == nil {
		return
	}
	var bad []string
	for _, n := range rl.auth.Current().Names() {
		if strings.Contains(n, "-route-") || strings.Contains(n, "-session-") {
			bad = append(bad, n)
		}
	}
	if len(bad) > 0 {
		rl.obs.Logger().Warn("with --routes, a proxy username ends at its first -route- or -session-: these users cannot authenticate; rename them",
			observability.Strs("users", bad))
	}
}

// routeNames lists the routes of t, for the log.
func routeNames(t *routes.Table) []string {
	if t == nil {
		return nil
	}
	names := make([]string, 0, len(t.Routes()))
	for _, r := range t.Routes() {
		names = append(names, r.Name())
	}
	return names
}
