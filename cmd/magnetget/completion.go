package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// completionCommand prints a shell completion script wired to urfave/cli's
// --generate-bash-completion, so completions always follow the flags the
// binary really has.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "<bash | zsh | fish>",
		Description: "Install, for example:\n" +
			"  magnetget completion bash > ~/.local/share/bash-completion/completions/magnetget\n" +
			"  magnetget completion zsh > \"${fpath[1]}/_magnetget\"\n" +
			"  magnetget completion fish > ~/.config/fish/completions/magnetget.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageHint("completion takes one shell: bash, zsh or fish")
			}
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return usageError("completion: %q is not bash, zsh or fish", c.Args().First())
			}
			return nil
		},
	}
}

// bashCompletion is urfave/cli v2's autocomplete/bash_autocomplete for
// magnetget: the binary itself lists the candidates.
const bashCompletion = `# bash completion for magnetget (from: magnetget completion bash)
_magnetget_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "${cur}" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  if [[ -z "$opts" ]]; then
    COMPREPLY=($(compgen -f -- "${cur}"))
  else
    COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  fi
  return 0
}
complete -o bashdefault -o default -F _magnetget_complete magnetget
`

// zshCompletion is urfave/cli v2's autocomplete/zsh_autocomplete.
const zshCompletion = `#compdef magnetget
# zsh completion for magnetget (from: magnetget completion zsh)
_magnetget() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _magnetget magnetget
`

// manCommand prints the manual page (or, with --markdown, doc/cli.md) made
// from the same command and flag definitions --help shows, so the three
// never disagree.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff; --markdown for the reference in doc/cli.md)",
		Description: "Install, for example:\n" +
			"  magnetget man > ~/.local/share/man/man1/magnetget.1 && man magnetget",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "markdown", Usage: "Markdown instead of roff"}},
		Action: func(c *cli.Context) error {
			s, err := manPage(c.Bool("markdown"))
			if err != nil {
				return err
			}
			fmt.Fprint(c.App.Writer, s)
			return nil
		},
	}
}

// manPage renders the reference from a fresh app: the version stays out,
// so the committed doc/cli.md does not change with every build.
func manPage(markdown bool) (string, error) {
	app := newApp(nil, nil)
	app.Version = ""
	app.Description = manDescription
	if markdown {
		s, err := app.ToMarkdown()
		return cliDocHeader + s, err
	}
	return app.ToManWithSection(1)
}

const manDescription = `magnetget turns a magnet link (or an infohash, or a .torrent file) into files, with no central server: its own Kademlia DHT node finds peers, the metadata comes from those peers (BEP 9), and every piece is downloaded, SHA-1 verified and shared while it downloads.

Exit status: 0 done; 1 failed (one line on stderr says why); 2 a usage error; 130 interrupted (rerun the same command to resume); 141 the reader of stdout or stderr went away (magnetget stopped as on Ctrl-C, after saving its state).

Environment: the variables shown beside a flag ([$MAGNETGET_DATA_DIR] ...) set its default; a flag on the command line wins.

Files: DATA_DIR/routing.db and routing6.db keep the DHT node id and the best nodes (DATA_DIR is --data-dir, else $XDG_DATA_HOME/magnetget, else ~/.local/share/magnetget). A download keeps .INFOHASH.magnetget-resume (the verified pieces) and .INFOHASH.magnetget-info (the metadata) in its output directory, so a rerun resumes, and --seed starts, without asking peers; deleting them only costs a recheck and a metadata fetch.

See also doc/json.md (the --json events) and doc/examples.md in the source tree.`

// cliDocHeader opens doc/cli.md, which is this command's output.
const cliDocHeader = "<!-- Generated from the flag definitions by `go run ./cmd/magnetget man --markdown > doc/cli.md`; do not edit. -->\n\n"
