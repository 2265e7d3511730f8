package index

import (
	"errors"
	"fmt"

	"github.com/magnetget/magnetget/internal/boltsafe"
)

// bbolt maps the whole file and trusts it: a truncated file makes the
// first read past its end a SIGBUS ("fatal error: fault"), and damaged
// pages make it panic. internal/boltsafe checks the file before bbolt maps
// it (boltsafe.Open) and turns faults and panics during reads into errors
// (boltsafe.Guard); this file adapts its errors to this package's.

// guard runs a bbolt transaction under boltsafe.Guard: a fault or panic
// comes back as an error wrapping ErrCorrupt.
func guard(fn func() error) error {
	err := boltsafe.Guard(fn)
	if errors.Is(err, boltsafe.ErrCorrupt) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}
