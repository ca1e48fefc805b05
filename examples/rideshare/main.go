// Rideshare: a demo service modeled on Pyroscope's rideshare example, standard library
// only. It knows nothing of any profiler.
//
// GET /bike, /car and /scooter call OrderBike, OrderCar and OrderScooter, which search for
// the nearest vehicle; the work grows with the search radius and the car path does the
// most. In the instance whose REGION is us-west-1, a mutexLock() hotspot alternates every
// MUTEX_PHASE_SECONDS between a low phase (~33% of the instance's CPU) and a high phase
// (~71%), so that instance alternates between low and high CPU.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"
)

var (
	region       = envOr("REGION", "us-east-1")
	phaseSeconds = envInt("MUTEX_PHASE_SECONDS", 60)
	// Units of work per unit of search radius; one unit is ~0.2 ms of CPU.
	workPerRadius = envInt("WORK_PER_RADIUS", 10)
	started       = time.Now()
	sink          atomic.Uint64
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// The CPU-burning loops live in the body of each function that "does the work" rather
// than in a shared helper: a frameless leaf helper would hide its caller from a
// frame-pointer unwinder. Each loop accumulates locally: concurrent requests writing one
// shared variable would bounce its cache line between CPUs and make a unit's cost depend
// on how many requests overlap.
const iterationsPerUnit = 200000

// highPhase reports whether us-west-1's mutex hotspot is in its high phase.
func highPhase() bool {
	return (int(time.Since(started).Seconds())/phaseSeconds)%2 == 1
}

// mutexLock stands for time spent contending on a lock in us-west-1. Shares: with W the
// vehicle search's work, mutexLock does W/2 in the low phase (1/3 of the total) and
// 2.45 W in the high phase (~71%).
//
//go:noinline
func mutexLock(searchWork int) {
	units := searchWork / 2
	if highPhase() {
		units = searchWork * 245 / 100
	}
	acc := uint64(0)
	for i := 0; i < units*iterationsPerUnit; i++ {
		acc += uint64(i)*uint64(i) ^ acc>>3
	}
	sink.Add(acc)
}

//go:noinline
func checkDriverAvailability(searchWork int) {
	if region == "us-west-1" {
		mutexLock(searchWork)
	}
}

//go:noinline
func FindNearestVehicle(ctx context.Context, searchRadius int, vehicle string) {
	pprof.Do(ctx, pprof.Labels("vehicle", vehicle), func(context.Context) {
		searchWork := searchRadius * workPerRadius
		acc := uint64(0)
		for i := 0; i < searchWork*iterationsPerUnit; i++ {
			acc += uint64(i)*uint64(i) ^ acc>>3
		}
		sink.Add(acc)
		checkDriverAvailability(searchWork)
	})
}

//go:noinline
func OrderBike(ctx context.Context, searchRadius int) { FindNearestVehicle(ctx, searchRadius, "bike") }

//go:noinline
func OrderScooter(ctx context.Context, searchRadius int) {
	FindNearestVehicle(ctx, searchRadius, "scooter")
}

//go:noinline
func OrderCar(ctx context.Context, searchRadius int) { FindNearestVehicle(ctx, searchRadius, "car") }

func main() {
	addr := envOr("LISTEN", "127.0.0.1:5000")
	http.HandleFunc("/bike", func(w http.ResponseWriter, r *http.Request) {
		OrderBike(r.Context(), 1)
		fmt.Fprintln(w, "bike ordered in", region)
	})
	http.HandleFunc("/scooter", func(w http.ResponseWriter, r *http.Request) {
		OrderScooter(r.Context(), 2)
		fmt.Fprintln(w, "scooter ordered in", region)
	})
	http.HandleFunc("/car", func(w http.ResponseWriter, r *http.Request) {
		OrderCar(r.Context(), 4)
		fmt.Fprintln(w, "car ordered in", region)
	})
	http.HandleFunc("/phase", func(w http.ResponseWriter, r *http.Request) {
		phase := "low"
		if highPhase() {
			phase = "high"
		}
		fmt.Fprintf(w, "{\"region\":%q,\"phase\":%q,\"phaseSeconds\":%d,\"uptime\":%.3f}\n",
			region, phase, phaseSeconds, time.Since(started).Seconds())
	})
	// Bind first and log the bound address, so LISTEN=127.0.0.1:0 works (tests use it).
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("rideshare in %s listening on http://%s (mutex phase %d s)", region, listener.Addr(), phaseSeconds)
	log.Fatal(http.Serve(listener, nil))
}
