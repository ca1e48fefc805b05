// Workload for the agent tests and benchmark.
//
//   agent_burn <ms>                      burn <ms> of CPU in kiln_agent_burn_long(), exit
//   agent_burn short <ms>                burn <ms> of CPU in kiln_agent_burn_short(), exit
//   agent_burn burst <n> <ms> <par>      run <n> `agent_burn short <ms>` children (fork +
//                                        exec), at most <par> at a time; exit when all did
//   agent_burn churn <per_sec> <secs> <ms>  start <per_sec> short children per second
//                                        for <secs> seconds (each burning <ms>), reaping
//                                        as they exit (at most 512 alive at once;
//                                        prints "started skipped")
//   agent_burn pulse <ms> <period_ms> <secs>  burn <ms> in kiln_agent_pulse() every
//                                        <period_ms> for <secs> seconds (a long-lived
//                                        process that uses a little CPU), exit
//
// Build: gcc -O0 -g -fno-omit-frame-pointer -o agent_burn agent_burn.c
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

volatile unsigned long sink;

__attribute__((noinline)) void kiln_agent_spin(double until_cpu_ms) {
    while (cpu_ms() < until_cpu_ms) {
        for (int i = 0; i < 10000; i++) sink += i * 7;
    }
}

__attribute__((noinline)) void kiln_agent_burn_long(double ms) { kiln_agent_spin(cpu_ms() + ms); }

__attribute__((noinline)) void kiln_agent_burn_short(double ms) { kiln_agent_spin(cpu_ms() + ms); }

__attribute__((noinline)) void kiln_agent_pulse(double ms) { kiln_agent_spin(cpu_ms() + ms); }

static const char *self_exe;

/* Most churn children alive at once. */
#define CHURN_MAX_RUNNING 512

static pid_t spawn_short(const char *ms) {
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_exe, "agent_burn", "short", ms, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    self_exe = "/proc/self/exe";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        self_exe = exe;
    }
    if (argc == 3 && strcmp(argv[1], "short") == 0) {
        kiln_agent_burn_short(atof(argv[2]));
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "burst") == 0) {
        int total = atoi(argv[2]), par = atoi(argv[4]), running = 0, started = 0, failed = 0;
        while (started < total || running > 0) {
            while (running < par && started < total) {
                if (spawn_short(argv[3]) > 0) running++;
                started++;
            }
            int status;
            if (wait(&status) > 0) {
                running--;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
            }
        }
        printf("%d %d\n", total, failed);
        return failed != 0;
    }
    if (argc == 5 && strcmp(argv[1], "churn") == 0) {
        double per_sec = atof(argv[2]), secs = atof(argv[3]);
        double start = now_ms(), interval = 1000.0 / per_sec;
        long started = 0, skipped = 0, running = 0;
        while (now_ms() - start < secs * 1000) {
            double due = start + started * interval;
            while (now_ms() >= due && now_ms() - start < secs * 1000) {
                // On an overloaded host children outlive their slot: never more than
                // CHURN_MAX_RUNNING at once, so the churn cannot exhaust the pids.
                if (running < CHURN_MAX_RUNNING && spawn_short(argv[4]) > 0)
                    running++;
                else
                    skipped++;
                started++;
                due = start + started * interval;
            }
            while (waitpid(-1, NULL, WNOHANG) > 0) {
                running--;
            }
            usleep(1000);
        }
        while (wait(NULL) > 0) {
        }
        printf("%ld %ld\n", started - skipped, skipped);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "pulse") == 0) {
        double ms = atof(argv[2]), period = atof(argv[3]), end = now_ms() + atof(argv[4]) * 1e3;
        srand(getpid());
        usleep((useconds_t)(rand() % (int)(period > 1 ? period : 1)) * 1000);
        while (now_ms() < end) {
            kiln_agent_pulse(ms);
            usleep((useconds_t)(period * 1000));
        }
        return 0;
    }
    if (argc == 2) {
        kiln_agent_burn_long(atof(argv[1]));
        return 0;
    }
    fprintf(stderr, "usage: see agent_burn.c\n");
    return 2;
}
