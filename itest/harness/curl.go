package harness

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
)

// CurlResult is the outcome of one curl run.
type CurlResult struct {
	Stdout, Stderr string
	// Code is curl's exit code (0 on success).
	Code int
}

// Curl runs /usr/bin/curl with args (and --max-time 60) under a 90 s bound.
// It fails the test only if curl cannot be run at all.
func Curl(t TB, args ...string) CurlResult {
	t.Helper()
	bin := needBinary(t, "/usr/bin/curl", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--max-time", "60"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := CurlResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("harness: running curl %s: %v", strings.Join(args, " "), err)
	}
	return res
}
