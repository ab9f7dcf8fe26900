// Package buf holds the one helper every package here uses to reuse its
// working memory.
package buf

// Grow returns s with length n: s's own array when its capacity suffices
// (the values are whatever it held), else a new zeroed one.
func Grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
