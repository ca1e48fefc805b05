// Go workload for Kiln's goroutine-label tests (standard library only).
//
//	golabels shares SECONDS    one OS-locked goroutine: 50% of its work under task=a,
//	                           30% under task=b (in C when built with cgo), 20% unlabeled
//	golabels features SECONDS  nested pprof.Do, labels inherited by a child goroutine,
//	                           12 labels (more than Kiln keeps), long keys and values,
//	                           and unlabeled work, each in its own function
//
// Prints `ready` once started. Runs for SECONDS or until SIGTERM/SIGINT, then prints its
// own ground truth as JSON:
// {"pid":..,"cgo":bool,"cpu":{"a":s,"b":s,"none":s},"process":s}, where cpu is the thread
// CPU time spent in each part and process the CPU time of the whole process (getrusage).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

var sink uint64

// One unit is ~0.5 ms of CPU.
const unit = 300000

//go:noinline
func spinGo(units int) {
	for i := 0; i < units*unit; i++ {
		sink += uint64(i)*uint64(i) ^ sink>>3
	}
}

func threadCPU() float64 {
	var ts syscall.Timespec
	// CLOCK_THREAD_CPUTIME_ID = 3
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func processCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

var stop atomic.Bool

//go:noinline
func workA(units int) { spinGo(units) }

//go:noinline
func workB(units int) { spinB(units) } // spinB: C under cgo, Go otherwise

//go:noinline
func workNone(units int) { spinGo(units) }

func shares(out map[string]float64) {
	runtime.LockOSThread()
	ctx := context.Background()
	timed := func(key string, f func()) {
		t := threadCPU()
		f()
		out[key] += threadCPU() - t
	}
	for !stop.Load() {
		// A fresh label set per call, as a server handling requests would make. Chunks of
		// 10-25 ms keep the cost of the two clock reads per chunk (labelled, but outside
		// the timed part) far below the 3-point tolerance.
		pprof.Do(ctx, pprof.Labels("task", "a"), func(context.Context) {
			timed("a", func() { workA(50) })
		})
		pprof.Do(ctx, pprof.Labels("task", "b"), func(context.Context) {
			timed("b", func() { workB(30) })
		})
		timed("none", func() { workNone(20) })
	}
}

//go:noinline
func outerWork() { spinGo(2) }

//go:noinline
func innerWork() { spinGo(2) }

//go:noinline
func childWork() { spinGo(2) }

//go:noinline
func manyWork() { spinGo(2) }

//go:noinline
func longWork() { spinGo(2) }

//go:noinline
func plainWork() { spinGo(2) }

// ManyLabels: 12 labels, more than the 10 Kiln keeps.
func manyLabels() []string {
	var kv []string
	for i := 0; i < 12; i++ {
		kv = append(kv, fmt.Sprintf("many%02d", i), fmt.Sprintf("value%02d", i))
	}
	return kv
}

// Lengths around the limits (keys 15 bytes, values 47 bytes) and a 20-byte value.
var longLabels = []string{
	"key_of_15_bytes", "value_of_exactly_20b",
	"key_of_16_bytes_", "v",
	"long", strings.Repeat("0123456789", 6), // 60 bytes
	"v47", strings.Repeat("x", 47),
}

func features() {
	ctx := context.Background()
	loop := func(f func()) {
		go func() {
			for !stop.Load() {
				f()
			}
		}()
	}
	loop(func() {
		pprof.Do(ctx, pprof.Labels("task", "outer"), func(ctx context.Context) {
			outerWork()
			pprof.Do(ctx, pprof.Labels("sub", "inner"), func(context.Context) {
				innerWork()
			})
		})
	})
	loop(func() {
		pprof.Do(ctx, pprof.Labels("task", "parent"), func(context.Context) {
			done := make(chan struct{})
			go func() {
				childWork()
				close(done)
			}()
			<-done
		})
	})
	loop(func() {
		pprof.Do(ctx, pprof.Labels(manyLabels()...), func(context.Context) { manyWork() })
	})
	loop(func() {
		pprof.Do(ctx, pprof.Labels(longLabels...), func(context.Context) { longWork() })
	})
	loop(plainWork)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: golabels shares|features SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	cpu := map[string]float64{}
	finished := make(chan struct{})
	// Readiness: the runtime is up and the mode is about to start (os.Stdout is unbuffered).
	fmt.Println("ready")
	switch os.Args[1] {
	case "shares":
		go func() {
			shares(cpu)
			close(finished)
		}()
	case "features":
		features()
		close(finished)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	select {
	case <-sig:
	case <-time.After(time.Duration(seconds * float64(time.Second))):
	}
	stop.Store(true)
	<-finished
	out, _ := json.Marshal(map[string]any{
		"pid":     os.Getpid(),
		"cgo":     cgoEnabled,
		"cpu":     cpu,
		"process": processCPU(),
	})
	fmt.Println(string(out))
}
