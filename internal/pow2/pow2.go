// Package pow2 finds exact power-of-two scale factors. Multiplying a float
// by a power of two changes no rounding (barring overflow and underflow),
// so the numerics use these factors to keep float32 products in range while
// computing bit for bit what the unscaled formulas would.
package pow2

import "math"

// Normalizer returns the power of two 2^-e that brings the largest
// magnitude in x into [1, 2), or 1 when x is all zeros or holds a value
// that is not finite.
func Normalizer(x []float32) float64 {
	var m float32
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		if v > m || v != v {
			m = v
		}
	}
	if m == 0 || m != m || math.IsInf(float64(m), 0) {
		return 1
	}
	_, e := math.Frexp(float64(m)) // m = f * 2^e, f in [0.5, 1)
	return math.Ldexp(1, 1-e)
}
