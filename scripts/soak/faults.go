package main

import (
	"github.com/proxyto/proxyto/itest/harness"
)

// fault is what goes wrong in one exchange. The client draws it (so it
// knows which fault hit which exchange) and asks the upstream for it: by
// the X-Wire-Fault header (http, https) or the SOCKS5 username
// (harness.FaultUser). "refuse" needs no upstream: X-Proxy-To names a port
// bound without a listener.
type fault uint8

const (
	noFault fault = iota
	fRefuse
	fReset
	fHang
	f407
	fGarbage
	fResetMidBody
	fCloseMidBody
	fSlowHead
	fTinyproxy
	numFaults
)

// effect is how a fault shows at the client.
type effect uint8

const (
	// clean: the exchange must succeed, every byte identical.
	clean effect = iota
	// headError: proxyto must answer with its own error response (status
	// and Proxy-Status type from faultInfo.want).
	headError
	// cut: the answer starts (200, part of the body or tunnel bytes, all
	// verified) and then the connection closes, cleanly or by reset,
	// before the end. No second response may follow.
	cut
)

// faultInfo is one row of the fault table.
type faultInfo struct {
	name string
	// mode is what the upstream injects (WireForward: nothing).
	mode   harness.WireMode
	effect effect
	// status, errType and received are the error response a headError
	// fault must get (received 0: no received-status expected).
	status   int
	errType  string
	received int
	// alsoTimeout accepts a 504 http_response_timeout as an expected error
	// for a clean fault that is slow on purpose: the soak must not fail on
	// a loaded machine being slow.
	alsoTimeout bool
}

// faults is the one table of faults and what each must produce.
var faults = [numFaults]faultInfo{
	noFault:       {name: "none", mode: harness.WireForward, effect: clean},
	fRefuse:       {name: "refuse", mode: harness.WireForward, effect: headError, status: 502, errType: "connection_refused"},
	fReset:        {name: "reset", mode: harness.WireReset, effect: headError, status: 502, errType: "connection_terminated"},
	fHang:         {name: "hang", mode: harness.WireHang, effect: headError, status: 504, errType: "http_response_timeout"},
	f407:          {name: "407", mode: harness.Wire407, effect: headError, status: 502, errType: "http_request_denied", received: 407},
	fGarbage:      {name: "garbage", mode: harness.WireGarbage, effect: headError, status: 502, errType: "http_protocol_error"},
	fResetMidBody: {name: "reset-mid-body", mode: harness.WireCutReset, effect: cut},
	fCloseMidBody: {name: "close-mid-body", mode: harness.WireCutClose, effect: cut},
	fSlowHead:     {name: "slow-head", mode: harness.WireSlowHead, effect: clean, alsoTimeout: true},
	fTinyproxy:    {name: "tinyproxy", mode: harness.WireTinyproxy, effect: clean},
}

func (f fault) String() string { return faults[f].name }

// info returns f's row as it applies through upstream u: a SOCKS5 upstream
// rejects credentials without an HTTP status, so its 407 carries no
// received-status.
func (f fault) info(u upstream) faultInfo {
	fi := faults[f]
	if u == upSOCKS5 && f == f407 {
		fi.received = 0
	}
	return fi
}

// Fault sets the kinds draw from.
var (
	headFaults   = []fault{fRefuse, fReset, fHang, f407, fGarbage, fSlowHead}
	tunnelFaults = append(headFaults[:len(headFaults):len(headFaults)], fResetMidBody, fCloseMidBody)
	getFaults    = append(tunnelFaults[:len(tunnelFaults):len(tunnelFaults)], fTinyproxy)
	sendFaults   = append(headFaults[:len(headFaults):len(headFaults)], fTinyproxy)
)

// applies reports whether upstream u can inject f: tinyproxy's stale
// keep-alive is about pooled HTTP connections, which SOCKS5 has not.
func (f fault) applies(u upstream) bool {
	return !(f == fTinyproxy && u == upSOCKS5)
}
