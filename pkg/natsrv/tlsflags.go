package natsrv

import "flag"

// TLSFlags are the --tls-ca, --tls-cert and --tls-key flags every command
// that connects to NATS takes.
type TLSFlags struct {
	CAFile, CertFile, KeyFile string
}

// Add declares the flags on fs.
func (t *TLSFlags) Add(fs *flag.FlagSet) {
	fs.StringVar(&t.CAFile, "tls-ca", "", "CA certificate that signed the NATS server's certificate (turns TLS on)")
	fs.StringVar(&t.CertFile, "tls-cert", "", "client TLS certificate, for servers that verify clients")
	fs.StringVar(&t.KeyFile, "tls-key", "", "client TLS key, with --tls-cert")
}

// Apply copies the flags into connect options.
func (t TLSFlags) Apply(o *ConnectOptions) {
	o.CAFile, o.CertFile, o.KeyFile = t.CAFile, t.CertFile, t.KeyFile
}

// Args gives the flags back as command-line arguments, for child processes.
func (t TLSFlags) Args() []string {
	var out []string
	for _, kv := range [][2]string{{"--tls-ca", t.CAFile}, {"--tls-cert", t.CertFile}, {"--tls-key", t.KeyFile}} {
		if kv[1] != "" {
			out = append(out, kv[0], kv[1])
		}
	}
	return out
}
