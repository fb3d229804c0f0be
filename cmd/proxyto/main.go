// Command proxyto is a forward-proxy gateway: each request or CONNECT names the
// upstream proxy to carry it in an X-Proxy-To header. See README.md.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/alecthomas/kong"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// cli is the whole command line. Every flag has a PROXYTO_* environment
// variable; kong prints both in --help.
type cli struct {
	Run         runCmd         `cmd:"" default:"withargs" help:"Run the gateway (the default command)."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 if the admin /health endpoint answers 200 (for container health checks)."`
	Version     versionCmd     `cmd:"" help:"Print the version and exit."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println("proxyto", version)
	return nil
}

func main() {
	// gnet's loops spend their idle time inside epoll_wait, a system call
	// that keeps its P. With a single P (one CPU, or taskset), a goroutine
	// the loop wakes (the dial pool) waits until sysmon takes the P back,
	// up to 10 ms. A second P lets it run at once. GOMAXPROCS from the
	// environment wins.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("proxyto"),
		kong.Description("Forward-proxy gateway: carries each request or CONNECT through the upstream proxy named in its X-Proxy-To header."),
		kong.DefaultEnvars("PROXYTO"),
		kong.UsageOnError(),
	)
	if err := ctx.Run(); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "proxyto: ") {
			msg = "proxyto: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}
