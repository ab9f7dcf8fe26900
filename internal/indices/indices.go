// Package indices checks lists of sample indices without allocating in
// the steady state.
package indices

import "github.com/frogopt/frog/internal/buf"

// Marks is reusable memory for FirstInvalid; the zero value is ready.
type Marks struct {
	seen []bool
}

// FirstInvalid returns the position in idx of the first index outside
// [0, batch) or already listed before it, or -1 when there is none. It
// marks the indices it has seen in m and clears them again before it
// returns, so m allocates only when batch grows.
func (m *Marks) FirstInvalid(idx []int, batch int) int {
	if len(idx) == 0 {
		return -1
	}
	// Every mark is false between calls, in the whole array.
	m.seen = buf.Grow(m.seen, batch)
	seen := m.seen
	bad := -1
	for i, v := range idx {
		if v < 0 || v >= batch || seen[v] {
			bad = i
			break
		}
		seen[v] = true
	}
	marked := idx
	if bad >= 0 {
		marked = idx[:bad]
	}
	for _, v := range marked {
		seen[v] = false
	}
	return bad
}
