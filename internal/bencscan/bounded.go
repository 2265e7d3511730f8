package bencscan

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/anacrolix/torrent/bencode"
)

// ErrBencode is wrapped by every error of DecodeBounded, Check and Items.
var ErrBencode = errors.New("bad bencode")

// boundedDepth is the nesting DecodeBounded and Check accept.
const boundedDepth = 256

func scanBounded(b []byte, off int) (int, error) {
	end, err := Scan(b, off, boundedDepth)
	if err != nil {
		return end, fmt.Errorf("%w: %w", ErrBencode, err)
	}
	return end, nil
}

// DecodeBounded decodes b, which must hold exactly one bencoded value, into v. It is meant for
// bytes from the network or the disk: the syntax, the nesting depth (at most 256 levels) and every
// string length are checked first by a scan that allocates nothing, then the value is decoded with
// string lengths capped at len(b), so nothing larger than the input is allocated for one string
// and hostile nesting cannot exhaust the stack. anacrolix's decoder reports some type mismatches
// by panicking (and re-panics runtime errors); a recover here turns any such panic into an error
// as a last line of defence.
func DecodeBounded(b []byte, v any) error {
	end, err := scanBounded(b, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return fmt.Errorf("%w: %d bytes of trailing garbage", ErrBencode, len(b)-end)
	}
	_, err = DecodeScanned(b, v)
	return err
}

// DecodePrefix decodes the one bencoded value at the start of b into v and returns its length,
// leaving what follows alone (a ut_metadata data message carries raw bytes after its dict). The
// value is scanned first with nesting at most maxDepth, then decoded as DecodeScanned does.
func DecodePrefix(b []byte, maxDepth int, v any) (int, error) {
	if _, err := Scan(b, 0, maxDepth); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBencode, err)
	}
	return DecodeScanned(b, v)
}

// DecodeScanned decodes the value at the start of b into v and returns its length. b must have
// passed Scan (or Check, Dict), which bounds the nesting; string lengths are capped at len(b) here,
// and the decoder's panics (it re-panics errors from Unmarshaler methods and reports some type
// mismatches so) come back as errors. It is the one place the project hands network or disk
// bytes to the bencode decoder.
func DecodeScanned(b []byte, v any) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("%w: decoder panic: %v", ErrBencode, r)
		}
	}()
	d := bencode.NewDecoder(bytes.NewReader(b))
	d.MaxStrLen = int64(len(b))
	if err := d.Decode(v); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBencode, err)
	}
	return int(d.Offset), nil
}

// Check reports whether b holds exactly one syntactically valid bencoded value, with
// nesting and string lengths bounded as in DecodeBounded. It allocates nothing.
func Check(b []byte) error {
	end, err := scanBounded(b, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return fmt.Errorf("%w: %d bytes of trailing garbage", ErrBencode, len(b)-end)
	}
	return nil
}

// Items returns the elements of the bencoded list b, or the keys and values of the dict b
// alternating, as sub-slices of b (nothing is copied), at most limit of them; the rest are not
// looked at. b should have passed Check; an element that does not scan ends the walk with an
// error.
func Items(b []byte, limit int) ([][]byte, error) {
	if len(b) < 2 || (b[0] != 'l' && b[0] != 'd') {
		return nil, fmt.Errorf("%w: not a list or dict", ErrBencode)
	}
	// Every element takes at least 2 bytes ("0:", "le"): one allocation of the right size.
	out := make([][]byte, 0, max(0, min(limit, (len(b)-2)/2)))
	for off := 1; len(out) < limit; {
		if off >= len(b) {
			return out, fmt.Errorf("%w: unterminated list", ErrBencode)
		}
		if b[off] == 'e' {
			break
		}
		end, err := scanBounded(b, off)
		if err != nil {
			return out, err
		}
		out = append(out, b[off:end])
		off = end
	}
	return out, nil
}

// Str returns the content of the bencoded string b (a sub-slice of b) and whether b is exactly
// one string.
func Str(b []byte) ([]byte, bool) {
	colon := bytes.IndexByte(b, ':')
	if colon < 1 || colon > 10 || (b[0] == '0' && colon > 1) {
		return nil, false
	}
	n := 0
	for _, d := range b[:colon] {
		if d < '0' || d > '9' {
			return nil, false
		}
		n = n*10 + int(d-'0')
	}
	if n != len(b)-colon-1 {
		return nil, false
	}
	return b[colon+1:], true
}

// Int returns the value of the bencoded integer b and whether b is exactly one integer that
// fits an int64.
func Int(b []byte) (int64, bool) {
	if len(b) < 3 || b[0] != 'i' || b[len(b)-1] != 'e' || !ValidInt(b[1:len(b)-1]) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b[1:len(b)-1]), 10, 64)
	return n, err == nil
}
