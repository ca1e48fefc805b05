"""CPU-bound Python workload for `cargo xtask bench python`.

Spins in pure Python 30 frames deep (<module>, main, 27 levels of descend, spin) and
every 100 ms prints "<CLOCK_MONOTONIC ns> <operations so far> <process CPU ns>", the
format the bench's throughput reader expects. Runs until SIGTERM. Arguments are ignored
(the bench passes a mode and a duration to every workload).
"""
import signal
import sys
import threading
import time

DEPTH = 27
ops = 0


def spin():
    global ops
    while True:
        x = 0
        for i in range(1000):
            x += i * i
        ops += 1


def descend(n):
    if n == 0:
        spin()
    else:
        descend(n - 1)


def report():
    while True:
        time.sleep(0.1)
        print(time.monotonic_ns(), ops, time.process_time_ns(), flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=report, daemon=True).start()
    descend(DEPTH - 1)


main()
