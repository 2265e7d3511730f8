package magnet

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// parseSelect parses a BEP 53 selection: comma-separated file indexes and
// inclusive ranges, as in "0,2,4-6".
func parseSelect(s string) ([]Range, error) {
	if s == "" {
		return nil, errors.New("empty selection")
	}
	var rs []Range
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return nil, fmt.Errorf("empty item in %q", abbrev(s))
		}
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parseIndex(lo)
		if err != nil {
			return nil, fmt.Errorf("bad item %q: %w", abbrev(item), err)
		}
		last := first
		if isRange {
			if last, err = parseIndex(hi); err != nil {
				return nil, fmt.Errorf("bad item %q: %w", abbrev(item), err)
			}
			if last < first {
				return nil, fmt.Errorf("bad item %q: range ends before it starts", abbrev(item))
			}
		}
		rs = append(rs, Range{first, last})
	}
	return rs, nil
}

// parseIndex accepts only plain decimal digits: strconv alone would also take
// a sign, which is not BEP 53 syntax.
func parseIndex(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing file index")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("file index %q is not a decimal number", abbrev(s))
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxFileIndex {
		return 0, fmt.Errorf("file index %s is too large", abbrev(s))
	}
	return int(n), nil
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges, so that
// equal selections compare equal and print the same way.
func mergeRanges(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b Range) int { return a.First - b.First })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.First <= last.Last+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func formatSelect(rs []Range) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(r.First))
		if r.Last != r.First {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(r.Last))
		}
	}
	return b.String()
}
