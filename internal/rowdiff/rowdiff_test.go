package rowdiff

import "testing"

func TestFar(t *testing.T) {
	want := []float32{3, 4, 0, 0, 1, 0}
	cases := []struct {
		got  []float32
		tol  float64
		row  int
		dist float64
	}{
		{[]float32{3, 4, 0, 0, 1, 0}, 0, -1, 0},
		{[]float32{3, 4.5, 0, 0, 1, 0}, 0.2, -1, 0},
		{[]float32{3, 4.5, 0, 0, 1, 0}, 0.05, 0, 0.5},
		{[]float32{3, 4, 0, 0, 1, 0.5}, 0.4, 1, 0.5},
		{[]float32{3, 4, 0, 0, 1, 0.5}, 0.6, -1, 0},
	}
	for _, c := range cases {
		row, dist, _ := Far(c.got, want, 3, c.tol)
		if row != c.row || (row >= 0 && dist != c.dist) {
			t.Errorf("Far(%v, tol %v) = row %d at %v, want row %d at %v", c.got, c.tol, row, dist, c.row, c.dist)
		}
	}
}
