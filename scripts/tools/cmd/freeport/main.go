// Command freeport prints N distinct loopback TCP ports that the kernel just
// handed out (bind 127.0.0.1:0, all held at once, then closed), one a line.
// The caller still has to retry on "address already in use": another process
// may take a port between this program's exit and the caller's bind.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
)

func main() {
	n := flag.Int("n", 1, "how many ports")
	host := flag.String("host", "127.0.0.1", "address to bind")
	flag.Parse()
	var ls []net.Listener
	for range *n {
		l, err := net.Listen("tcp", net.JoinHostPort(*host, "0"))
		if err != nil {
			log.Fatalf("freeport: %v", err)
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
}
