package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// run builds the app with the given writers and runs it; tests call it
// in-process. It returns the process exit status: 0 done, 1 failed, 2 a
// usage error (with a pointer to --help), 130 interrupted.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, permuteArgs(app, args))
	if errors.Is(context.Cause(ctx), errBrokenPipe) {
		// Stopped because the reader of our output went away: the status a
		// SIGPIPE death would give, after a clean shutdown.
		return 141
	}
	if err == nil {
		return 0
	}
	var ue *usageErr
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "magnetget:", esc(ue.msg))
		if ue.hint {
			fmt.Fprintf(stderr, "see '%s --help'\n", helpPath(args))
		}
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := strings.TrimSpace(err.Error()); msg != "" {
			fmt.Fprintln(stderr, "magnetget:", userMessage(err))
		}
		return ec.ExitCode()
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "magnetget: interrupted")
		return 130
	}
	fmt.Fprintln(stderr, "magnetget:", userMessage(err))
	return 1
}

// helpPath is the command whose --help to point at: "magnetget seed".
func helpPath(args []string) string {
	app := newApp(io.Discard, io.Discard)
	for _, a := range args[1:] {
		if c := findCommand(app.Commands, a); c != nil {
			return "magnetget " + c.Name
		}
	}
	return "magnetget"
}

// version is the module version the binary was built from ("devel" for a
// build from a work tree), shown by --version.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func init() {
	// urfave/cli gives --version the alias -v, which is --verbose here.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                   "magnetget",
		Usage:                  "download and share BitTorrent content from magnet links, with no central server",
		UsageText:              "magnetget [command] [options] <magnet-uri | file.torrent | URL of a .torrent>",
		Version:                version(),
		Writer:                 stdout,
		ErrWriter:              stderr,
		UseShortOptionHandling: true,
		Suggest:                true,
		EnableBashCompletion:   true,
		// Errors are printed once, by run, with one prefix.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
		Flags:          getFlags(),
		Action:         getAction,
		Commands: []*cli.Command{
			getCommand(),
			metaCommand(),
			lookupCommand(),
			nodeCommand(),
			seedCommand(),
			createCommand(),
			crawlCommand(),
			completionCommand(),
			manCommand(),
		},
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cs []*cli.Command) {
		for _, c := range cs {
			c.OnUsageError = onUsageError
			setUsage(c.Subcommands)
		}
	}
	setUsage(app.Commands)
	return app
}

// onUsageError turns a flag the parser refuses into a short usage error
// instead of urfave/cli's whole help on stdout.
func onUsageError(_ *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		// The flag package names it with one dash whatever was typed.
		if len(name) > 2 {
			name = "-" + name
		}
		msg = "unknown flag " + name
	}
	return &usageErr{msg: msg, hint: true}
}

// logger returns the slog.Logger the flags ask for, writing to stderr.
func logger(c *cli.Context) *slog.Logger { return loggerTo(c, c.App.ErrWriter) }

// loggerTo is logger writing to w (a progress display that clears its bar
// before a log line).
func loggerTo(c *cli.Context, w io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelInfo
	}
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	return slog.New(newLineHandler(w, level))
}

func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what happens (info level)"},
		&cli.BoolFlag{Name: "debug", Usage: "log packet-level detail"},
	}
}

// usageErr is an error the user can fix by changing the command line:
// exit status 2, and a pointer to --help.
type usageErr struct {
	msg  string
	hint bool // the command line's shape is wrong: point at --help
}

func (e *usageErr) Error() string { return e.msg }

func usageError(format string, args ...any) error {
	return &usageErr{msg: fmt.Sprintf(format, args...)}
}

// usageHint is a usageError that also points at --help: an unknown flag,
// a missing or extra argument.
func usageHint(format string, args ...any) error {
	return &usageErr{msg: fmt.Sprintf(format, args...), hint: true}
}
