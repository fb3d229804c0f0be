package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// healthcheckCmd lets a container image without a shell check itself.
type healthcheckCmd struct {
	Admin   string        `default:"127.0.0.1:9090" help:"Admin listener address to check."`
	Path    string        `default:"/health" help:"Path to request (/health or /ready)."`
	Timeout time.Duration `default:"2s" help:"Give up after this long."`
}

func (h healthcheckCmd) Run() error {
	addr := h.Admin
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	cl := http.Client{Timeout: h.Timeout}
	resp, err := cl.Get("http://" + addr + h.Path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", h.Path, resp.Status)
	}
	return nil
}
