// Shared library for the unwind workload, built -O2 -fomit-frame-pointer -shared: a
// two-deep call chain inside a library without frame pointers.
volatile unsigned long unwind_lib_sink;

__attribute__((noipa)) unsigned long lib_inner(unsigned long n) {
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += i * i;
    unwind_lib_sink += s;
    return s;
}

__attribute__((noipa)) unsigned long lib_outer(unsigned long n) {
    // Work after the call keeps it from becoming a tail call.
    unsigned long s = lib_inner(n);
    unwind_lib_sink ^= s;
    return s + 1;
}
