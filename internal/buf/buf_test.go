package buf

import "testing"

// Grow keeps the array when it is large enough and replaces it otherwise.
func TestGrow(t *testing.T) {
	s := make([]float32, 3, 8)
	s[0] = 7
	g := Grow(s, 6)
	if len(g) != 6 || &g[0] != &s[0] || g[0] != 7 {
		t.Fatalf("Grow(len 3 cap 8, 6) = len %d, same array %v, first %v", len(g), &g[0] == &s[0], g[0])
	}
	h := Grow(s, 9)
	if len(h) != 9 || &h[0] == &s[0] || h[0] != 0 {
		t.Fatalf("Grow(len 3 cap 8, 9) = len %d, same array %v, first %v", len(h), &h[0] == &s[0], h[0])
	}
	if e := Grow([]float64(nil), 0); len(e) != 0 {
		t.Fatalf("Grow(nil, 0) has length %d", len(e))
	}
}
