//go:build amd64 && !purego

package kernels

//go:noescape
func fmaPeak(n int)
