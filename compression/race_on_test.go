//go:build race

package compression

// raceEnabled: the race detector slows compression some fifty times, so the
// round-trip test covers fewer combinations under it.
const raceEnabled = true
