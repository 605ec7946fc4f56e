package logtail

import "testing"

func TestTruncateASCII(t *testing.T) {
	cases := map[string]string{"short": "short", "exactly10!": "exactly10!", "a bit longer text": "a bit lon…"}
	for in, want := range cases {
		if got := Truncate(in, 10); got != want {
			t.Errorf("Truncate(%q, 10) = %q, want %q", in, got, want)
		}
	}
}
