// Syscall-heavy workload: most of its CPU time is spent in the kernel, writing to
// /dev/null and reading from /dev/zero.
//   syscalls <seconds>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void syscall_loop(int in, int out) {
    static char buf[4096];
    for (int i = 0; i < 1000; i++) {
        if (read(in, buf, sizeof buf) < 0) exit(1);
        if (write(out, buf, sizeof buf) < 0) exit(1);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    int in = open("/dev/zero", O_RDONLY), out = open("/dev/null", O_WRONLY);
    if (in < 0 || out < 0) return 1;
    double start = wall();
    while (wall() - start < seconds) syscall_loop(in, out);
    return 0;
}
