package natsrv

import (
	"flag"
	"slices"
	"testing"
)

func TestTLSFlagsRoundTrip(t *testing.T) {
	var f TLSFlags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f.Add(fs)
	if err := fs.Parse([]string{"--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"}); err != nil {
		t.Fatal(err)
	}
	var o ConnectOptions
	f.Apply(&o)
	if o.CAFile != "ca.pem" || o.CertFile != "c.pem" || o.KeyFile != "k.pem" {
		t.Errorf("connect options %+v", o)
	}
	// A child process given Args parses to the same flags.
	var g TLSFlags
	fs2 := flag.NewFlagSet("child", flag.ContinueOnError)
	g.Add(fs2)
	if err := fs2.Parse(f.Args()); err != nil || g != f {
		t.Errorf("child flags %+v from %v, want %+v (%v)", g, f.Args(), f, err)
	}
	if args := (TLSFlags{CAFile: "ca.pem"}).Args(); !slices.Equal(args, []string{"--tls-ca", "ca.pem"}) {
		t.Errorf("args %v", args)
	}
}
