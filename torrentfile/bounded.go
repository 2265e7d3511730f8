package torrentfile

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
)

// ErrBencode is wrapped by every error of DecodeBounded.
var ErrBencode = errors.New("bad bencode")

// DecodeBounded decodes b, which must hold exactly one bencoded value, into v. It is meant for
// bytes from the network or the disk: the syntax, the nesting depth (at most 256 levels) and every
// string length are checked first by a scan that allocates nothing, then the value is decoded with
// string lengths capped at len(b), so nothing larger than the input is allocated for one string
// and hostile nesting cannot exhaust the stack. anacrolix's decoder reports some type mismatches
// by panicking (and re-panics runtime errors); a recover here turns any such panic into an error
// as a last line of defence.
func DecodeBounded(b []byte, v any) (err error) {
	end, err := scanBencode(b, 0, ErrBencode)
	if err != nil {
		return err
	}
	if end != len(b) {
		return fmt.Errorf("%w: %d bytes of trailing garbage", ErrBencode, len(b)-end)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrBencode, r)
		}
	}()
	d := bencode.NewDecoder(bytes.NewReader(b))
	d.MaxStrLen = int64(len(b))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBencode, err)
	}
	return nil
}
