package logtail

import (
	"fmt"
	"strings"
	"time"
)

// Entry is one parsed log line.
type Entry struct {
	Time    time.Time // always in UTC
	Level   string    // DEBUG, INFO, WARN or ERROR
	Message string
}

var levels = map[string]bool{"DEBUG": true, "INFO": true, "WARN": true, "ERROR": true}

// ParseLine reads "<RFC 3339 time> <LEVEL> <message>".
func ParseLine(line string) (Entry, error) {
	parts := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(parts) < 3 {
		return Entry{}, fmt.Errorf("logtail: expected \"<time> <level> <message>\", got %q", line)
	}
	stamp, err := time.Parse(time.RFC3339, parts[0])
	if err != nil {
		return Entry{}, fmt.Errorf("logtail: bad time %q: %w", parts[0], err)
	}
	level := strings.ToUpper(parts[1])
	if !levels[level] {
		return Entry{}, fmt.Errorf("logtail: unknown level %q", parts[1])
	}
	return Entry{Time: stamp.UTC(), Level: level, Message: parts[2]}, nil
}
