//go:build !noasm

package asm

// Kernel8x32 is the AVX-512 micro-kernel: for i < 8 and j < 32,
//
//	c[i*ldc+j] += alpha * sum_{p<k} a[i*rsa+p*csa] * B(p, j)
//
// where B(p, j) is b[p*ldb+j] for j < 16 and b[p*ldb+boff+j-16] for
// j >= 16 (with overwrite, c[i*ldc+j] = alpha * sum, C not read): the
// two 16-wide halves of a row of B may lie apart (two adjacent panels of
// a packed matrix) or together (boff = 16). The 8x32
// sums stay in sixteen ZMM registers across the whole k loop, each one
// accumulated in the order of p with one FMA a step and then added to C
// with one FMA, exactly as Kernel6x16 does: for the same inputs the two
// kernels give the same bits. Only for a CPU with AVX-512F (package blas
// checks).
//
//go:noescape
func Kernel8x32(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool)

// Kernel8x32Tiles is Kernel8x32 on tiles tiles in turn: tile t reads A
// from a[t*astep:], B from b[t*bstep:] and adds to (or with overwrite
// writes) c[t*cstep:]; and within a tile, after every kseg steps of p
// (kseg > 0; kseg <= 0 means k), A and B move on by ajump and bjump
// values: element (i, p) of A is a[i*rsa + p*csa + (p/kseg)*ajump] and
// row p of B starts at p*ldb + (p/kseg)*bjump. So A or B may be rows of
// several runs of a larger matrix, as the patches of a convolution are
// rows of its image. Each tile's sums are those of Kernel8x32 on its
// values gathered; one call saves the calls a strip of tiles would
// take. Only for a CPU with AVX-512F.
//
//go:noescape
func Kernel8x32Tiles(tiles, k int, alpha float32, a []float32, rsa, csa, astep int, b []float32, ldb, boff, bstep int, c []float32, ldc, cstep int, overwrite bool, kseg, ajump, bjump int)

// FMALoop512 runs n rounds of twelve independent 16-wide float32 FMAs (384
// flops a round) on registers only: the arithmetic peak of a CPU with
// AVX-512F. Only for such a CPU. It returns what FMALoop returns.
//
//go:noescape
func FMALoop512(n int) float32
