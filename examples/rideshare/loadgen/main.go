// Load generator for the rideshare demo: hits /bike, /scooter and /car on every instance
// at a steady rate until stopped or -duration elapses.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"
)

func main() {
	targets := flag.String("targets", "http://127.0.0.1:5001,http://127.0.0.1:5002,http://127.0.0.1:5003",
		"comma-separated base URLs of rideshare instances")
	rate := flag.Float64("rate", 5, "requests per second per instance and vehicle")
	duration := flag.Duration("duration", 0, "stop after this long (0 = run until killed)")
	flag.Parse()

	client := &http.Client{Timeout: 10 * time.Second}
	var deadline time.Time
	if *duration > 0 {
		deadline = time.Now().Add(*duration)
	}
	var wg sync.WaitGroup
	for _, base := range strings.Split(*targets, ",") {
		for _, vehicle := range []string{"bike", "scooter", "car"} {
			wg.Add(1)
			go func(url string) {
				defer wg.Done()
				tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
				defer tick.Stop()
				for range tick.C {
					if !deadline.IsZero() && time.Now().After(deadline) {
						return
					}
					resp, err := client.Get(url)
					if err != nil {
						log.Printf("%s: %v", url, err)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}(strings.TrimSpace(base) + "/" + vehicle)
		}
	}
	wg.Wait()
}
