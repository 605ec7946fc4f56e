package logtail

// Ring keeps the most recent lines pushed to it, up to its capacity.
type Ring struct {
	lines []string
	next  int
	full  bool
}

// NewRing returns an empty ring holding at most capacity lines.
func NewRing(capacity int) *Ring {
	if capacity < 1 {
		panic("logtail: ring capacity must be at least 1")
	}
	return &Ring{lines: make([]string, capacity)}
}

// Push adds a line, dropping the oldest one when the ring is full.
func (r *Ring) Push(line string) {
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// Len is the number of lines held.
func (r *Ring) Len() int {
	if r.full {
		return len(r.lines)
	}
	return r.next
}

// Last returns up to n of the newest lines, oldest first.
func (r *Ring) Last(n int) []string {
	if n > r.Len() {
		n = r.Len()
	}
	out := make([]string, 0, n)
	for back := n; back > 0; back-- {
		index := (r.next - back + len(r.lines)) % len(r.lines)
		out = append(out, r.lines[index])
	}
	return out
}
