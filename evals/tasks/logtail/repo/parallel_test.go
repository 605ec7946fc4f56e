package logtail

import (
	"strings"
	"testing"
)

func TestMapOrderedOneWorker(t *testing.T) {
	got := MapOrdered([]string{"a", "b", "c"}, 1, strings.ToUpper)
	if strings.Join(got, "") != "ABC" {
		t.Fatalf("got %v", got)
	}
}
