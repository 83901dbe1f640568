// Package cli holds what both binaries share on the command line: subcommand
// dispatch, the common logging flags (--log-level, --log-json), the version
// string, and the rule that an error ends the program with one clear line.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Version is set at link time: -ldflags "-X github.com/draftbench/draftbench/pkg/cli.Version=v0.1.0".
var Version = "dev"

// ErrUsage marks an error as a usage mistake: the program prints the usage of
// the command after the message and exits with status 2.
var ErrUsage = errors.New("usage")

// Env is what a command gets from the outside world, injected so tests need no globals.
type Env struct {
	Args   []string // after the command name
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Logger hclog.Logger
}

// Command is one subcommand.
type Command struct {
	Name     string
	Synopsis string // one line, shown in the program's help
	Usage    string // the full usage line(s), shown by --help
	// Flags declares the command's flags on fs; Run runs it with fs parsed.
	Flags func(fs *flag.FlagSet)
	Run   func(env *Env, fs *flag.FlagSet) error
}

// Program is a binary made of subcommands.
type Program struct {
	Name     string
	Synopsis string
	Default  string // command run when the first argument is a flag or absent ("" = print help)
	Commands []*Command
}

// LogFlags are the logging flags every command takes.
type LogFlags struct {
	Level string
	JSON  bool
}

// Add declares --log-level and --log-json on fs.
func (l *LogFlags) Add(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: trace, debug, info, warn, error, off")
	fs.BoolVar(&l.JSON, "log-json", false, "log as JSON lines")
}

// Logger builds the program's one root logger.
func (l *LogFlags) Logger(name string, w io.Writer) (hclog.Logger, error) {
	level := hclog.LevelFromString(l.Level)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("%w: --log-level %q is not one of trace, debug, info, warn, error, off", ErrUsage, l.Level)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     w,
		JSONFormat: l.JSON,
		Color:      hclog.AutoColor,
	}), nil
}

// Main runs the program with os.Args and exits.
func (p *Program) Main() {
	os.Exit(p.Run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// Run dispatches args to a subcommand and returns the exit status.
func (p *Program) Run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	name := p.Default
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			p.help(stdout)
			return 0
		case "-version", "--version":
			fmt.Fprintf(stdout, "%s %s\n", p.Name, Version)
			return 0
		}
	}
	if name == "help" || name == "" {
		p.help(stdout)
		return 0
	}
	if name == "version" {
		fmt.Fprintf(stdout, "%s %s\n", p.Name, Version)
		return 0
	}
	cmd := p.find(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "%s: unknown command %q (run %s --help)\n", p.Name, name, p.Name)
		return 2
	}
	fullName := p.Name + " " + cmd.Name
	if cmd.Name == p.Default {
		fullName = p.Name
	}
	fs := flag.NewFlagSet(fullName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var lf LogFlags
	lf.Add(fs)
	version := fs.Bool("version", false, "print the version and exit")
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	usage := func(w io.Writer) {
		// The synopsis lines, the one-line summary, then the long text.
		synopsis, more, _ := strings.Cut(strings.TrimSpace(cmd.Usage), "\n\n")
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, cmd.Synopsis)
		if more = strings.TrimSpace(more); more != "" {
			fmt.Fprintf(w, "\n%s\n", more)
		}
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "%s: %s\n", fullName, dashes(err.Error()))
		fmt.Fprintf(stderr, "run '%s --help' for usage\n", fullName)
		return 2
	}
	if *version {
		fmt.Fprintf(stdout, "%s %s\n", p.Name, Version)
		return 0
	}
	logger, err := lf.Logger(p.Name, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fullName, strings.TrimPrefix(err.Error(), ErrUsage.Error()+": "))
		return 2
	}
	env := &Env{Args: fs.Args(), Stdout: stdout, Stderr: stderr, Getenv: getenv, Logger: logger}
	if err := cmd.Run(env, fs); err != nil {
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(stderr, "%s: %s\n", fullName, strings.TrimPrefix(err.Error(), ErrUsage.Error()+": "))
			fmt.Fprintf(stderr, "run '%s --help' for usage\n", fullName)
			return 2
		}
		fmt.Fprintf(stderr, "%s: error: %v\n", fullName, err)
		if errors.Is(err, ErrInterrupted) {
			return ExitInterrupted
		}
		return 1
	}
	return 0
}

// ErrInterrupted is returned (wrapped) by a command that a SIGINT or SIGTERM
// stopped; Run then exits with ExitInterrupted, as a shell reports a Ctrl-C,
// so a script running several commands stops as well.
var ErrInterrupted = errors.New("interrupted")

// ExitInterrupted is the exit status of an interrupted command (128 + SIGINT).
const ExitInterrupted = 130

// parseInterspersed lets flags follow positional arguments
// (`controller run job.hcl --out dir`), as users of Nomad and vLLM expect.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			positional = append(positional, rest[1:]...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

func (p *Program) find(name string) *Command {
	for _, c := range p.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (p *Program) help(w io.Writer) {
	fmt.Fprintf(w, "%s — %s\n\nUsage:\n", p.Name, p.Synopsis)
	cmds := append([]*Command(nil), p.Commands...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	for _, c := range cmds {
		// The synopsis lines: up to the first blank line of the usage.
		for _, line := range strings.Split(strings.TrimSpace(c.Usage), "\n") {
			if strings.TrimSpace(line) == "" {
				break
			}
			fmt.Fprintf(w, "  %s\n", strings.TrimRight(line, " "))
		}
	}
	fmt.Fprintf(w, "\nCommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Synopsis)
	}
	fmt.Fprintf(w, "\nEvery command takes --help, --log-level LEVEL and --log-json. %s --version prints the version.\n", p.Name)
}

// Repeated collects a flag given several times (-var a=1 -var b=2).
type Repeated []string

func (r *Repeated) String() string     { return strings.Join(*r, ",") }
func (r *Repeated) Set(v string) error { *r = append(*r, v); return nil }

// Usagef returns a usage error.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// printFlags lists fs's flags as the usage lines and docs write them:
// --name, except the job variables' -var and -var-file (Nomad's and
// Terraform's spelling); Go's flag package accepts either.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if f.Name == "var" || f.Name == "var-file" {
			dash = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dash + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "false", "0s", "[]":
		default:
			if fmt.Sprintf("%T", f.Value) == "*flag.stringValue" { // as flag.PrintDefaults quotes
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(w)
	})
}

// flagInError is a flag name as Go's flag package writes it in its errors.
var flagInError = regexp.MustCompile(`(^|[: ])-([a-z][a-z0-9-]*)`)

// dashes spells the flags in a flag-package error as --name, as the usage
// lines do (the job variables keep Nomad's -var and -var-file).
func dashes(msg string) string {
	return flagInError.ReplaceAllStringFunc(msg, func(m string) string {
		i := strings.Index(m, "-")
		if name := m[i+1:]; name == "var" || name == "var-file" {
			return m
		}
		return m[:i] + "-" + m[i:]
	})
}
