// Call chains of known shape for the DWARF unwinder, built -O2 -fomit-frame-pointer:
//   main;run;task_deep;recurse x DEPTH;deep_leaf       (recursion, DEPTH >= 64)
//   main;run;task_lib;lib_outer;lib_inner              (through libunwind_lib.so)
//   main;run;task_chain;chain_a;chain_b;chain_c        (frameless functions)
// Each task measures its own thread CPU time, so the program reports its own truth:
//   unwind_chains <seconds> [depth]
// prints `ready` once started, then {"pid":..,"depth":..,"cpu":{"task_deep":s,"task_lib":s,"task_chain":s},"total":s}
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

unsigned long lib_outer(unsigned long n);

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

__attribute__((noipa)) unsigned long deep_leaf(unsigned long n) {
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += i ^ (i >> 3);
    sink += s;
    return s;
}

__attribute__((noipa)) unsigned long recurse(int depth, unsigned long n) {
    if (depth <= 1) return deep_leaf(n) + 1;
    unsigned long r = recurse(depth - 1, n);
    sink ^= r; // not a tail call
    return r + (unsigned long)depth;
}

__attribute__((noipa)) unsigned long chain_c(unsigned long n) {
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += i * 7;
    sink += s;
    return s;
}
__attribute__((noipa)) unsigned long chain_b(unsigned long n) { unsigned long r = chain_c(n); sink ^= r; return r + 2; }
__attribute__((noipa)) unsigned long chain_a(unsigned long n) { unsigned long r = chain_b(n); sink ^= r; return r + 3; }

static double spent[3];
static int depth = 70;

__attribute__((noipa)) void task_deep(unsigned long n) { double t = thread_cpu(); sink += recurse(depth, n); spent[0] += thread_cpu() - t; }
__attribute__((noipa)) void task_lib(unsigned long n) { double t = thread_cpu(); sink += lib_outer(n); spent[1] += thread_cpu() - t; }
__attribute__((noipa)) void task_chain(unsigned long n) { double t = thread_cpu(); sink += chain_a(n); spent[2] += thread_cpu() - t; }

__attribute__((noipa)) void run(double seconds) {
    const unsigned long slice = 300000;
    double start = wall();
    while (wall() - start < seconds) {
        for (int k = 0; k < 5; k++) task_deep(slice);
        for (int k = 0; k < 3; k++) task_lib(slice);
        for (int k = 0; k < 2; k++) task_chain(slice);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    if (argc > 2) depth = atoi(argv[2]);
    // Readiness: past the loader, about to run the measured loop.
    printf("ready\n");
    fflush(stdout);
    double total0 = thread_cpu();
    run(seconds);
    double total = thread_cpu() - total0;
    printf("{\"pid\":%d,\"depth\":%d,\"cpu\":{\"task_deep\":%.6f,\"task_lib\":%.6f,\"task_chain\":%.6f},\"total\":%.6f}\n",
           getpid(), depth, spent[0], spent[1], spent[2], total);
    return 0;
}
