//go:build !cgo

package main

const cgoEnabled = false

//go:noinline
func spinB(units int) { spinGo(units) }
