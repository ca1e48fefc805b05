// CPU-bound workload with known shares. Each work function burns CPU in ~1 ms slices and
// measures its own thread CPU time, so the program reports its own ground truth:
//   shares <seconds> <weight_a> <weight_b> <weight_c>
// prints {"pid":..,"cpu":{"work_a":s,"work_b":s,"work_c":s},"total":s} on exit.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void spin(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink += i * i;
}

static double spent[3];

__attribute__((noinline)) void work_a(unsigned long n) { double t = thread_cpu(); spin(n); spent[0] += thread_cpu() - t; }
__attribute__((noinline)) void work_b(unsigned long n) { double t = thread_cpu(); spin(n); spent[1] += thread_cpu() - t; }
__attribute__((noinline)) void work_c(unsigned long n) { double t = thread_cpu(); spin(n); spent[2] += thread_cpu() - t; }

__attribute__((noinline)) void dispatch(int which, unsigned long n) {
    switch (which) {
    case 0: work_a(n); break;
    case 1: work_b(n); break;
    default: work_c(n); break;
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    int weights[3] = {5, 3, 2};
    for (int i = 0; i < 3 && i + 2 < argc; i++) weights[i] = atoi(argv[i + 2]);
    const unsigned long slice = 200000;
    double start = wall(), total0 = thread_cpu();
    // Slices are drawn at random with the given weights: a fixed rotation would be
    // periodic and could alias with the sampling clock.
    int total_weight = weights[0] + weights[1] + weights[2];
    unsigned long long rng = 0x9e3779b97f4a7c15ull ^ (unsigned long long)getpid();
    while (wall() - start < seconds) {
        for (int n = 0; n < 16; n++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int r = (int)(rng % (unsigned long long)total_weight);
            int w = r < weights[0] ? 0 : r < weights[0] + weights[1] ? 1 : 2;
            dispatch(w, slice);
        }
    }
    double total = thread_cpu() - total0;
    printf("{\"pid\":%d,\"cpu\":{\"work_a\":%.6f,\"work_b\":%.6f,\"work_c\":%.6f},\"total\":%.6f}\n",
           getpid(), spent[0], spent[1], spent[2], total);
    return 0;
}
