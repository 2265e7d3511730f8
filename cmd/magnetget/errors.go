package main

import (
	"strings"
)

// packagePrefixes are the "pkg:" prefixes our packages and their
// dependencies put on errors. They help a caller that logs a wrapped chain;
// a user reading one line needs the sentence at the end, so the CLI drops
// them when it prints an error.
var packagePrefixes = map[string]bool{
	"swarm": true, "storage": true, "storage error": true, "metadata": true, "maddr": true,
	"magnet": true, "peerwire": true, "trackers": true, "torrentfile": true, "dht": true,
	"routing": true, "index": true, "crawl": true, "bencode": true, "tracker": true,
}

// userMessage formats an error for the one line a user reads: the package
// prefixes of a wrapped chain removed ("swarm: storage error: storage:
// write a.bin: no space left" reads "write a.bin: no space left"), a
// segment repeated by two layers said once ("metadata: metadata: ..."),
// only the first line, and control characters escaped. Callers still wrap
// with %w; only the top formats.
func userMessage(err error) string {
	if err == nil {
		return ""
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	parts := strings.Split(msg, ": ")
	var keep []string
	for i, p := range parts {
		t := strings.TrimSpace(p)
		// A prefix is only a prefix when something follows it.
		if i < len(parts)-1 && packagePrefixes[strings.ToLower(t)] {
			continue
		}
		if len(keep) > 0 && keep[len(keep)-1] == t {
			continue
		}
		keep = append(keep, t)
	}
	return esc(strings.Join(keep, ": "))
}
