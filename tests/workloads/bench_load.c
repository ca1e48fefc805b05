// Benchmark workload for `cargo xtask bench sampler`: 2 worker threads doing counted
// operations, and a reporter that prints the running total so the bench can compute the
// throughput over any time window.
//   bench_load cpu|syscall <seconds>      (seconds <= 0: run until killed)
// Every 100 ms it prints "<CLOCK_MONOTONIC ns> <total ops> <process CPU ns>" (flushed); at
// the end "total <ops> <seconds>". Ops per CPU-second isolate the cost a sampler adds in
// the workload's own context (its interrupt handler is charged to the interrupted thread)
// from competition for the CPUs by other processes.
//   cpu:     a pure compute loop through a few nested functions; 1 op = 1 outer iteration.
//   syscall: 1 op = read(64 bytes from /dev/zero) + write(64 bytes to /dev/null) + getppid().
// Build: gcc -O2 -fno-omit-frame-pointer -pthread.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 2

struct counter {
    volatile unsigned long ops;
    char pad[64 - sizeof(unsigned long)];
};
static struct counter counters[THREADS] __attribute__((aligned(64)));
static volatile int stop;
static int syscall_mode;

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

__attribute__((noinline)) unsigned long mix(unsigned long x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdul;
    x ^= x >> 33;
    return x;
}

__attribute__((noinline)) unsigned long inner(unsigned long seed) {
    unsigned long acc = seed;
    for (int i = 0; i < 64; i++) acc = mix(acc + i);
    return acc;
}

__attribute__((noinline)) unsigned long middle(unsigned long seed) {
    return inner(seed) ^ inner(seed + 1);
}

__attribute__((noinline)) unsigned long outer(unsigned long seed) {
    return middle(seed) + middle(seed * 3);
}

__attribute__((noinline)) void cpu_loop(struct counter *c) {
    unsigned long seed = (unsigned long)c;
    while (!stop) {
        seed = outer(seed);
        c->ops++;
    }
    if (seed == 42) puts("");  // keep the result alive
}

__attribute__((noinline)) void syscall_op(int in, int out, char *buf) {
    if (read(in, buf, 64) != 64) exit(1);
    if (write(out, buf, 64) != 64) exit(1);
    getppid();
}

__attribute__((noinline)) void syscall_loop(struct counter *c) {
    char buf[64];
    int in = open("/dev/zero", O_RDONLY), out = open("/dev/null", O_WRONLY);
    if (in < 0 || out < 0) exit(1);
    while (!stop) {
        syscall_op(in, out, buf);
        c->ops++;
    }
    close(in);
    close(out);
}

static void *worker(void *arg) {
    struct counter *c = arg;
    if (syscall_mode)
        syscall_loop(c);
    else
        cpu_loop(c);
    return NULL;
}

static unsigned long long cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static unsigned long total(void) {
    unsigned long t = 0;
    for (int i = 0; i < THREADS; i++) t += counters[i].ops;
    return t;
}

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "cpu") && strcmp(argv[1], "syscall"))) {
        fprintf(stderr, "usage: bench_load cpu|syscall [seconds]\n");
        return 2;
    }
    syscall_mode = !strcmp(argv[1], "syscall");
    double seconds = argc > 2 ? atof(argv[2]) : 0;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    pthread_t t[THREADS];
    unsigned long long start = now_ns();
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, &counters[i]);
    struct timespec tick = {0, 100 * 1000 * 1000};
    while (!stop) {
        nanosleep(&tick, NULL);
        unsigned long long t_ns = now_ns();
        printf("%llu %lu %llu\n", t_ns, total(), cpu_ns());
        fflush(stdout);
        if (seconds > 0 && (t_ns - start) / 1e9 >= seconds) stop = 1;
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("total %lu %.3f\n", total(), (now_ns() - start) / 1e9);
    return 0;
}
