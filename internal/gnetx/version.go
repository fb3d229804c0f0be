package gnetx

import (
	"fmt"
	"runtime/debug"
)

// GnetVersion is the gnet release every assumption of this package was
// checked against (see the package doc).
const GnetVersion = "v2.9.7"

const gnetModule = "github.com/panjf2000/gnet/v2"

// checkVersion returns an error when the running binary's build information
// names another gnet version, or a replacement. Binaries without
// dependency information (test binaries) pass.
func checkVersion() error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, d := range bi.Deps {
		if d.Path != gnetModule {
			continue
		}
		if d.Replace != nil {
			return fmt.Errorf("%w: built with gnet replaced by %s %s", ErrInternals, d.Replace.Path, d.Replace.Version)
		}
		if d.Version != GnetVersion {
			return fmt.Errorf("%w: built with gnet %s", ErrInternals, d.Version)
		}
	}
	return nil
}
