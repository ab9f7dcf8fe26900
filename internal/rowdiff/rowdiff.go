// Package rowdiff compares two matrices row by row, as the tests of
// several packages do for the rows a solve or a product writes.
package rowdiff

import "math"

// Far returns the first row of got (rows of d values) that lies farther
// than tol times the norm of want's row from it, with that distance and
// norm, both Euclidean and summed in float64; row is -1 when none does.
func Far(got, want []float32, d int, tol float64) (row int, dist, norm float64) {
	for j := 0; j < len(want)/d; j++ {
		var dd, nn float64
		for i := j * d; i < (j+1)*d; i++ {
			e := float64(got[i]) - float64(want[i])
			dd += e * e
			nn += float64(want[i]) * float64(want[i])
		}
		if math.Sqrt(dd) > tol*math.Sqrt(nn) {
			return j, math.Sqrt(dd), math.Sqrt(nn)
		}
	}
	return -1, 0, 0
}
