// Package itest holds proxyto's integration tests: they build ./cmd/proxyto,
// run it as a process on loopback, and hold it to docs/behaviour.md with real clients
// (curl and raw sockets), a scriptable upstream proxy, Debian's squid and
// tinyproxy, and origins that count and checksum every byte.
//
//	go test ./itest                      # all
//	go test ./itest -run TestConnect     # one group
//	PROXYTO_BIN=/path/proxyto go test ./itest   # test a prebuilt binary
package itest

import (
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
