#!/bin/sh
# Generate magnetget's shell completions and manual page from the binary's
# own flag definitions (the same ones --help shows), into DIR (default
# ./dist), and print where to install them.
#
#   contrib/generate.sh [DIR]
#
# Needs `magnetget` on PATH, or MAGNETGET=/path/to/magnetget.
set -eu
out=${1:-dist}
mg=${MAGNETGET:-magnetget}
mkdir -p "$out/completions" "$out/man/man1"
"$mg" completion bash > "$out/completions/magnetget.bash"
"$mg" completion zsh > "$out/completions/_magnetget"
"$mg" completion fish > "$out/completions/magnetget.fish"
"$mg" man > "$out/man/man1/magnetget.1"
cat <<MSG
wrote $out/completions/{magnetget.bash,_magnetget,magnetget.fish} and $out/man/man1/magnetget.1
install for one user:
  install -Dm644 $out/completions/magnetget.bash ~/.local/share/bash-completion/completions/magnetget
  install -Dm644 $out/completions/_magnetget ~/.local/share/zsh/site-functions/_magnetget   # in \$fpath
  install -Dm644 $out/completions/magnetget.fish ~/.config/fish/completions/magnetget.fish
  install -Dm644 $out/man/man1/magnetget.1 ~/.local/share/man/man1/magnetget.1
system-wide: /usr/share/bash-completion/completions, /usr/share/zsh/vendor-completions,
  /usr/share/fish/vendor_completions.d, /usr/local/share/man/man1
MSG
