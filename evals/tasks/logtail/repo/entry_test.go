package logtail

import (
	"testing"
	"time"
)

func TestParseLineUTC(t *testing.T) {
	e, err := ParseLine("2024-01-02T03:04:05Z warn disk almost full")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if !e.Time.Equal(want) || e.Level != "WARN" || e.Message != "disk almost full" {
		t.Fatalf("got %+v", e)
	}
}

func TestParseLineErrors(t *testing.T) {
	for _, line := range []string{"", "2024-01-02T03:04:05Z", "yesterday INFO x", "2024-01-02T03:04:05Z LOUD x"} {
		if _, err := ParseLine(line); err == nil {
			t.Errorf("ParseLine(%q) succeeded", line)
		}
	}
}
