// Tools for proxyto's deployment and benchmark scripts: kept apart from the
// root module so that none of their dependencies reach the gateway's go.mod.
module github.com/proxyto/proxyto/scripts/tools

go 1.26.0
