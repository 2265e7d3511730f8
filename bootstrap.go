// Package magnetget holds what the whole program shares and that must live at
// the module root: the embedded default bootstrap list (go:embed cannot reach
// a parent directory, so the file and its embedding sit side by side here).
package magnetget

import _ "embed"

// DefaultBootstrap is bootstrap.txt: one multiaddr a line, # comments.
//
//go:embed bootstrap.txt
var DefaultBootstrap string
