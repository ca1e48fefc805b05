"""CPU workloads of known truth for Kiln's Python tests.

Each function measures its own CPU time (time.thread_time, inclusive), so the shares a
profiler reports can be checked. Work sizes are random, so that the loops do not run in
step with a sampling period (which would bias the shares a sampler sees). Prints "ready" once running; on SIGTERM (or after the
optional second argument's seconds) prints the truth as JSON ({"total": seconds,
"functions": {name: seconds}}) and exits.

Modes:
  pure     Walrus.dive and swim, pure Python, about 2:1
  hashlib  hashing() spends about half its time in hashlib (OpenSSL, native), half in
           Python (count_bytes)
  threads  two threads (OS names py-alpha, py-beta) running alpha() and beta()
  deep     recursion 150 frames deep (recurse), spinning in leaf()
"""
import ctypes
import hashlib
import json
import random
import signal
import sys
import threading
import time

spent = {}
lock = threading.Lock()
stop = threading.Event()


def measured(fn):
    name = fn.__qualname__

    def wrapper(*args):
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            dt = time.thread_time() - t0
            with lock:
                spent[name] = spent.get(name, 0.0) + dt

    return wrapper


class Walrus:
    @measured
    def dive(self, n):
        s = 0
        for i in range(n):
            s += i * i
        return s


@measured
def swim(n):
    x = 0
    for i in range(n):
        x ^= i
    return x


def pure():
    w = Walrus()
    while not stop.is_set():
        w.dive(random.randint(20000, 60000))
        swim(random.randint(10000, 30000))


DATA = memoryview(bytes(range(256)) * 8192)  # 2 MiB


@measured
def sha256_native(data):
    return hashlib.sha256(data).digest()


@measured
def count_bytes(n):
    c = 0
    for i in range(n):
        c += i & 7
    return c


@measured
def hashing():
    sha256_native(DATA[: random.randint(1 << 19, 3 << 19)])
    count_bytes(random.randint(8000, 24000))


def hashes():
    while not stop.is_set():
        hashing()


def set_thread_name(name):
    libc = ctypes.CDLL(None)
    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME


@measured
def alpha(n):
    s = 0
    for i in range(n):
        s += i
    return s


@measured
def beta(n):
    s = 1
    for i in range(n):
        s = (s * 3 + i) % 1000003
    return s


thread_cpu = {}


def run_thread(name, fn):
    set_thread_name(name)
    while not stop.is_set():
        fn(random.randint(10000, 30000))
    with lock:
        thread_cpu[name] = time.thread_time()


def threads():
    ts = [
        threading.Thread(target=run_thread, args=("py-alpha", alpha)),
        threading.Thread(target=run_thread, args=("py-beta", beta)),
    ]
    for t in ts:
        t.start()
    return ts


@measured
def leaf(n):
    s = 0
    for i in range(n):
        s += i
    return s


def recurse(depth):
    if depth == 0:
        return leaf(random.randint(10000, 30000))
    return recurse(depth - 1)


def deep():
    while not stop.is_set():
        recurse(150)


def finish(*_):
    stop.set()


def main():
    mode = sys.argv[1]
    signal.signal(signal.SIGTERM, finish)
    if len(sys.argv) > 2:
        # Exit by itself this many seconds after a line on stdin (a process that ends
        # mid-recording, started once the recording runs).
        print("ready", flush=True)
        sys.stdin.readline()
        threading.Timer(float(sys.argv[2]), finish).start()
    start = time.thread_time()
    workers = []
    if mode == "threads":
        workers = threads()
        print("ready", flush=True)
        while not stop.is_set():
            time.sleep(0.05)
        for t in workers:
            t.join()
        total = sum(thread_cpu.values())
    else:
        if len(sys.argv) <= 2:
            print("ready", flush=True)
        {"pure": pure, "hashlib": hashes, "deep": deep}[mode]()
        total = time.thread_time() - start
    print(json.dumps({"total": total, "functions": spent, "threads": thread_cpu}), flush=True)


if __name__ == "__main__":
    main()
