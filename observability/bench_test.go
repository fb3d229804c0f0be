package observability

import (
	"io"
	"testing"
)

func BenchmarkDone(b *testing.B) {
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"access=off", Options{AccessLog: false}},
		{"access=on", Options{AccessLog: true, Output: io.Discard}},
		{"access=sample0.01", Options{AccessLog: true, AccessLogSample: 0.01, Output: io.Discard}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := New(c.o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			o := s.Observer()
			r := errRecord()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					o.Done(r)
				}
			})
		})
	}
}

func BenchmarkRelayed(b *testing.B) {
	s, err := New(Options{Output: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	o := s.Observer()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Relayed(-1, -1, 16384, 1460)
		}
	})
}
