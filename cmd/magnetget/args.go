package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves flags in front of positional arguments, command by
// command, so that `magnetget seed DIR -o x.torrent` works as users of
// other CLIs expect: urfave/cli v2 (like the flag package) stops parsing
// flags at the first positional argument. "--" ends flag handling.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	// Shell completion: urfave/cli wants its flag last, and reads the word
	// being completed ("--li") from os.Args itself; handed to the parser,
	// a partial flag is an unknown flag.
	const complete = "--generate-bash-completion"
	if n := len(args); n > 1 && args[n-1] == complete {
		rest := args[:n-1]
		if m := len(rest); m > 1 && strings.HasPrefix(rest[m-1], "-") {
			rest = rest[:m-1]
		}
		return append(permuteArgs(app, rest), complete)
	}
	out := []string{args[0]}
	rest := args[1:]
	flags, cmds := app.Flags, app.Commands
	for {
		var (
			fl, pos []string
			next    *cli.Command
			i       int
		)
	scan:
		for i = 0; i < len(rest); i++ {
			a := rest[i]
			switch {
			case a == "--":
				pos = append(pos, rest[i:]...)
				i = len(rest)
				break scan
			case strings.HasPrefix(a, "-") && len(a) > 1:
				fl = append(fl, a)
				if !strings.Contains(a, "=") && takesValue(flags, strings.TrimLeft(a, "-")) && i+1 < len(rest) {
					i++
					fl = append(fl, rest[i])
				}
			default:
				if len(pos) == 0 {
					if c := findCommand(cmds, a); c != nil {
						next = c
						break scan
					}
				}
				pos = append(pos, a)
			}
		}
		out = append(out, fl...)
		if next == nil {
			return append(out, pos...)
		}
		// A subcommand: what came before it stays before it.
		out = append(out, pos...)
		out = append(out, rest[i])
		rest = rest[i+1:]
		flags, cmds = next.Flags, next.Subcommands
	}
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the named flag consumes the next argument.
func takesValue(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	// Unknown flags are left for the parser to report; assume no value.
	return false
}
