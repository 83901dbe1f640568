package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPrintFlags: flags print with two dashes, as usage lines and docs write
// them, the job variables with one; defaults only when they say something.
func TestPrintFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("nats", "nats://127.0.0.1:4222", "NATS `URL`")
	fs.Bool("wait", false, "wait until the job ends")
	fs.Duration("interval", time.Second, "how often")
	fs.Int("threads", 0, "threads (0: all)")
	fs.Func("var", "set a job variable: -var name=value", func(string) error { return nil })
	var b bytes.Buffer
	printFlags(&b, fs)
	want := `  --interval duration
    	how often (default 1s)
  --nats URL
    	NATS URL (default "nats://127.0.0.1:4222")
  --threads int
    	threads (0: all)
  -var value
    	set a job variable: -var name=value
  --wait
    	wait until the job ends
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestDashes(t *testing.T) {
	for in, want := range map[string]string{
		"flag needs an argument: -out":                     "flag needs an argument: --out",
		"flag provided but not defined: -bogus-x":          "flag provided but not defined: --bogus-x",
		"flag needs an argument: -var":                     "flag needs an argument: -var",
		`invalid value "x" for flag -threads: parse error`: `invalid value "x" for flag --threads: parse error`,
		"--out is already doubled":                         "--out is already doubled",
	} {
		if got := dashes(in); got != want {
			t.Errorf("dashes(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInterruptedExitStatus: a command stopped by a signal exits 130, as a
// shell reports a Ctrl-C, so scripts running several stop too; other
// errors exit 1.
func TestInterruptedExitStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: partial results written", ErrInterrupted), ExitInterrupted},
		{errors.New("no speculative request completed"), 1},
	} {
		p := &Program{Name: "x", Commands: []*Command{{Name: "run", Run: func(*Env, *flag.FlagSet) error { return tc.err }}}}
		var out, errb strings.Builder
		if code := p.Run([]string{"run"}, &out, &errb, func(string) string { return "" }); code != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, code, tc.want)
		}
	}
}
