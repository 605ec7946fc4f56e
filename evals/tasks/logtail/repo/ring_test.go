package logtail

import (
	"reflect"
	"testing"
)

func TestRingBeforeItFills(t *testing.T) {
	r := NewRing(4)
	r.Push("a")
	r.Push("b")
	if got := r.Last(5); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("Last(5) = %v", got)
	}
	if r.Len() != 2 {
		t.Fatalf("Len() = %d", r.Len())
	}
}

func TestRingEmpty(t *testing.T) {
	if got := NewRing(3).Last(2); len(got) != 0 {
		t.Fatalf("Last on an empty ring = %v", got)
	}
}
