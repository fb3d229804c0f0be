package harness

// TB is the part of testing.TB the harness calls. *testing.T and *testing.B
// satisfy it; a program that is not a test (the soak, scripts/soak) passes
// its own implementation to start the same servers.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Logf(format string, args ...any)
	Skip(args ...any)
	TempDir() string
}
