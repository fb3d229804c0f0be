package main

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/proxyto/proxyto/acl"
	"github.com/proxyto/proxyto/auth"
)

func TestBuildAuth(t *testing.T) {
	a, err := buildAuth(nil, "")
	if err != nil || a != nil {
		t.Fatalf("buildAuth(nil, \"\") = %v, %v; want nil", a, err)
	}
	a, err = buildAuth([]string{"u:p"}, "")
	if err != nil || a == nil {
		t.Fatalf("buildAuth(users) = %v, %v", a, err)
	}
	if ok, known := a.CachedUser([]byte("u"), []byte("p")); !ok || !known {
		t.Errorf("CachedUser(u, p) = %v, %v", ok, known)
	}
	if _, err := buildAuth([]string{"nocolon"}, ""); !errors.Is(err, auth.ErrBadUser) {
		t.Errorf("buildAuth(bad) error = %v", err)
	}
}

func TestBuildUpstreamCheck(t *testing.T) {
	meta := netip.MustParseAddr("169.254.169.254")
	check, err := buildUpstreamCheck(nil, nil, false)
	if err != nil || check == nil {
		t.Fatalf("buildUpstreamCheck = %v", err)
	}
	if err := check("x", meta); !errors.Is(err, acl.ErrLinkLocal) {
		t.Errorf("metadata not refused by default: %v", err)
	}
	if err := check("localhost", netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("loopback refused: %v", err)
	}
	check, _ = buildUpstreamCheck(nil, []string{"10.0.0.0/8"}, true)
	if err := check("x", meta); err != nil {
		t.Errorf("--allow-link-local ignored: %v", err)
	}
	if err := check("x", netip.MustParseAddr("10.1.1.1")); !errors.Is(err, acl.ErrDenied) {
		t.Errorf("deny ignored: %v", err)
	}
	if _, err := buildUpstreamCheck([]string{"http://x"}, nil, false); !errors.Is(err, acl.ErrInvalidEntry) {
		t.Errorf("bad entry error = %v", err)
	}
}
