package blas

// xpbyer is implemented by kernels with a fused y = x + beta*y.
type xpbyer interface {
	Xpby(x []float32, beta float32, y []float32)
}

// Xpby computes y[i] = x[i] + beta*y[i] over len(x) elements with k's
// fused kernel when it has one (the CG direction update p = r + beta*p).
func Xpby(k Kernels, x []float32, beta float32, y []float32) {
	if f, ok := k.(xpbyer); ok {
		f.Xpby(x, beta, y)
		return
	}
	y = y[:len(x)]
	for i, v := range x {
		y[i] = v + beta*y[i]
	}
}
