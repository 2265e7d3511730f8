package maddr

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/multiformats/go-multiaddr"
)

// LineError is a bad line of a multiaddr list such as bootstrap.txt.
type LineError struct {
	Line int    // 1-based
	Text string // the line as written, without comment
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("bootstrap line %d: %q: %v", e.Line, e.Text, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds a list line; a valid entry is far shorter.
const maxLine = 1024

// ParseList reads one multiaddr a line; text after '#' is a comment, blank
// lines are skipped. Each bad line comes back in bad as a *LineError while
// the good lines are still returned, so one typo does not cost the others.
// An entry must have a non-zero port.
func ParseList(r io.Reader) (addrs []multiaddr.Multiaddr, bad []error) {
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readLine(br)
		if text, _, _ := strings.Cut(line, "#"); strings.TrimSpace(text) != "" || tooLong {
			text = strings.TrimSpace(text)
			switch {
			case tooLong:
				bad = append(bad, &LineError{Line: lineNo, Text: shorten(text), Err: fmt.Errorf("line longer than %d bytes", maxLine)})
			default:
				m, perr := parseRemote(text)
				if perr != nil {
					bad = append(bad, &LineError{Line: lineNo, Text: text, Err: perr})
				} else {
					addrs = append(addrs, m)
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				bad = append(bad, &LineError{Line: lineNo, Err: fmt.Errorf("read: %w", err)})
			}
			return addrs, bad
		}
	}
}

// readLine returns the next line without its end of line, at most maxLine
// bytes of it: the rest of a longer line is read and dropped.
func readLine(br *bufio.Reader) (line string, tooLong bool, err error) {
	var b []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(b)+len(chunk) > maxLine {
			tooLong = true
			chunk = chunk[:max(0, min(len(chunk), maxLine-len(b)))]
		}
		b = append(b, chunk...)
		if err != nil || !isPrefix {
			if err == io.EOF && len(b) > 0 {
				err = nil // last line without a newline; EOF comes next call
			}
			return string(b), tooLong, err
		}
	}
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
