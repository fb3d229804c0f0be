package bridge

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// pair returns a handshaken TLS session over loopback TCP: the server side
// bridged (what the engine would enroll) and the client side as is.
func pair(t *testing.T, overPipe bool) (outer net.Conn, client *tls.Conn) {
	t.Helper()
	ca := harness.NewTestCA(t)
	var sraw, craw net.Conn
	if overPipe {
		sraw, craw = net.Pipe() // no descriptor: the bridge cannot poll
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		if craw, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		sraw = <-accepted
	}
	server := tls.Server(sraw, &tls.Config{Certificates: []tls.Certificate{ca.ServerCert}})
	client = tls.Client(craw, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	herr := make(chan error, 1)
	go func() { herr <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	outer, err := Start(server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outer.Close(); _ = client.Close() })
	deadline := time.Now().Add(20 * time.Second)
	_ = outer.SetDeadline(deadline)
	_ = client.SetDeadline(deadline)
	return outer, client
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEcho sends 4 MiB each way at once and checks both arrive intact, then
// that the client's close_notify reaches the engine's end as EOF.
func TestEcho(t *testing.T) {
	for _, overPipe := range []bool{false, true} {
		name := "tcp"
		if overPipe {
			name = "pipe"
		}
		t.Run(name, func(t *testing.T) {
			outer, client := pair(t, overPipe)
			up, down := random(t, 4<<20), random(t, 4<<20)
			errs := make(chan error, 2)
			go func() {
				_, err := client.Write(up)
				if err == nil {
					err = client.CloseWrite()
				}
				errs <- err
			}()
			go func() {
				_, err := outer.Write(down)
				errs <- err
			}()
			gotUp, err := io.ReadAll(outer)
			if err != nil {
				t.Fatalf("engine side read: %v", err)
			}
			gotDown := make([]byte, len(down))
			if _, err := io.ReadFull(client, gotDown); err != nil {
				t.Fatalf("client read: %v", err)
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if sha256.Sum256(gotUp) != sha256.Sum256(up) || !bytes.Equal(gotDown, down) {
				t.Fatalf("bytes changed: up %d/%d, down %d/%d", len(gotUp), len(up), len(gotDown), len(down))
			}
		})
	}
}

// TestBufferedRecords sends many small records in one burst and then goes
// quiet without closing: tls.Conn reads several records from the socket at
// once, and the ones it keeps must still reach the engine although the
// socket never becomes readable again.
func TestBufferedRecords(t *testing.T) {
	outer, client := pair(t, false)
	var want bytes.Buffer
	for i := range 500 {
		rec := []byte{byte(i), byte(i >> 8), 'r', 'e', 'c'}
		want.Write(rec)
		if _, err := client.Write(rec); err != nil { // one record each
			t.Fatal(err)
		}
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(outer, got); err != nil {
		t.Fatalf("engine side got %v before the client went quiet", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("records arrived changed")
	}
}

// TestHeldBeforeStart: application data tls.Conn read before the bridge
// started (a TLS client's first request arriving with its Finished, read by
// the handshake) reaches the engine although the socket never becomes
// readable again.
func TestHeldBeforeStart(t *testing.T) {
	ca := harness.NewTestCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	craw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sraw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server := tls.Server(sraw, &tls.Config{Certificates: []tls.Certificate{ca.ServerCert}})
	client := tls.Client(craw, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	defer client.Close()
	herr := make(chan error, 1)
	go func() { herr <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"first ", "second"} {
		if _, err := client.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// Both records are in the socket; a one-byte read makes tls.Conn take
	// them and keep all but that byte.
	time.Sleep(50 * time.Millisecond)
	one := make([]byte, 1)
	if _, err := io.ReadFull(server, one); err != nil || one[0] != 'f' {
		t.Fatalf("first byte %q, %v", one, err)
	}
	outer, err := Start(server)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	_ = outer.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("irst second"))
	if _, err := io.ReadFull(outer, got); err != nil || string(got) != "irst second" {
		t.Fatalf("engine side got %q, %v; want the bytes the handshake's reads kept", got, err)
	}
}

// TestHalfCloses checks both half-closes: the engine's CloseWrite reaches
// the client as EOF while the client can still send, and the client's
// close_notify reaches the engine while the engine can still send.
func TestHalfCloses(t *testing.T) {
	outer, client := pair(t, false)
	if _, err := outer.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := outer.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(client); err != nil || string(b) != "answer" {
		t.Fatalf("client read %q, %v; want the answer then EOF", b, err)
	}
	if _, err := client.Write([]byte("late upload")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(outer); err != nil || string(b) != "late upload" {
		t.Fatalf("engine read %q, %v; want the upload then EOF", b, err)
	}
}

// TestEngineCloseClosesClient checks that closing the engine's end tears
// the TLS session down.
func TestEngineCloseClosesClient(t *testing.T) {
	outer, client := pair(t, false)
	_ = outer.Close()
	// EOF or a reset both end it; only the test's deadline would mean the
	// session outlived the engine's end.
	if _, err := io.ReadAll(client); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("client still connected after the engine closed: %v", err)
		}
	}
}

// TestIdleHoldsNoBuffer moves bytes through many bridges, then checks that
// once they are idle none of them holds a copy buffer.
func TestIdleHoldsNoBuffer(t *testing.T) {
	var outers []net.Conn
	var clients []*tls.Conn
	for range 20 {
		o, c := pair(t, false)
		outers, clients = append(outers, o), append(clients, c)
	}
	msg := random(t, 100<<10)
	for i := range outers {
		go func() { _, _ = clients[i].Write(msg) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(outers[i], got); err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = outers[i].Write(msg) }()
		if _, err := io.ReadFull(clients[i], got); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for BuffersHeld() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d copy buffers held by idle bridges", BuffersHeld())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleReleasesTLSBuffers checks that a bridge whose client went quiet
// after sending a large body gives tls.Conn's read buffers back, and that
// the session works afterwards.
func TestIdleReleasesTLSBuffers(t *testing.T) {
	if !CanRelease() {
		t.Fatal("crypto/tls's layout is not what release.go expects: update it for this Go version")
	}
	outer, client := pair(t, false)
	before := Releases()
	body := random(t, 100<<10)
	go func() { _, _ = client.Write(body) }()
	if _, err := io.ReadFull(outer, make([]byte, len(body))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(idleRelease + 10*time.Second)
	for Releases() == before {
		if time.Now().After(deadline) {
			t.Fatal("an idle bridge never released its TLS read buffers")
		}
		time.Sleep(20 * time.Millisecond)
	}
	go func() { _, _ = client.Write(body) }()
	got := make([]byte, len(body))
	if _, err := io.ReadFull(outer, got); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("after release: %v", err)
	}
}
