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
