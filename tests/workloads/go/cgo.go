//go:build cgo

package main

/*
static volatile unsigned long c_sink;

// A trivial C function: task=b's work runs here, on the system stack (g0), so the
// labels must come from m.curg, not from the g in TLS.
static void c_spin(unsigned long n) {
	for (unsigned long i = 0; i < n; i++) c_sink += i * i ^ c_sink >> 3;
}
*/
import "C"

const cgoEnabled = true

//go:noinline
func spinB(units int) { C.c_spin(C.ulong(units * unit)) }
