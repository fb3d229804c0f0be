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
		kong.ExplicitGroups(flagGroups),
		kong.Help(help),
	)
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		os.Exit(1)
	}
}

// errorLine is how an error is printed: one line with exactly one
// "proxyto: " in front. Errors from proxyto's packages already start with
// it, and wrapping one in another ("proxyto: --default-upstream: proxyto:
// X-Proxy-To element 0: ...") would repeat it.
func errorLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "proxyto: ")
	return "proxyto: " + strings.ReplaceAll(msg, ": proxyto: ", ": ")
}

// help is kong's help printer, except for "proxyto --help": the gateway is
// the default command and its flags are what a user looks for, so that shows
// run's help, then the other commands.
func help(options kong.HelpOptions, ctx *kong.Context) error {
	if ctx.Selected() != nil {
		return kong.DefaultHelpPrinter(options, ctx)
	}
	runCtx, err := ctx.Kong.Parse([]string{"run"})
	if err != nil {
		return kong.DefaultHelpPrinter(options, ctx)
	}
	fmt.Fprintf(ctx.Stdout, "Usage: %s [run] [flags]\n       %s <command> [flags]\n", ctx.Model.Name, ctx.Model.Name)
	options.NoAppSummary = true
	if err := kong.DefaultHelpPrinter(options, runCtx); err != nil {
		return err
	}
	fmt.Fprintln(ctx.Stdout, "\nCommands:")
	for _, cmd := range ctx.Model.Children {
		if cmd.Hidden {
			continue
		}
		fmt.Fprintf(ctx.Stdout, "  %-13s %s\n", cmd.Name, cmd.Help)
	}
	fmt.Fprintf(ctx.Stdout, "\nRun \"%s <command> --help\" for more information on a command.\n", ctx.Model.Name)
	return nil
}
