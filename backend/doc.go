// Package backend defines the unit of work every compute backend carries
// out, one layer's row-wise preconditioning (a Job), the Engine interface
// that runs it, and the CPU engine built on packages conv, fisher, cg and
// blas. The OpenCL engine in package opencl implements the same interface;
// the root package picks one at run time.
package backend
