/* glibc malloc settings for the noviqi binary, applied before main (build.rs links this
 * object into the binaries and the integration tests only; README "Memory" has the figures).
 *
 * Two glibc habits kept a busy gateway at 30-60 MiB resident while it used 2-6 MB:
 *  - glibc raises its mmap threshold each time a large mmap'd block is freed (up to 32 MiB)
 *    and its trim threshold to twice that. After the first large request body, blocks of
 *    that size come from the per-thread arenas (up to 8 per core), and each arena keeps
 *    that much free memory at its top for good. Fixing both thresholds at glibc's own
 *    starting value (128 KiB) turns the adjustment off: larger blocks are mmap'd and
 *    unmapped when freed, and an arena gives back free memory at its top past 128 KiB.
 *  - free memory below the top of an arena (holes between blocks still in use) is never
 *    given back except by malloc_trim(3). With one thread per connection, blocks that live
 *    long (an upstream connection kept for reuse, a dashboard bucket) land anywhere in any
 *    arena, so the holes grow with time, and a retiring pool thread's memory becomes holes.
 *    A thread here calls malloc_trim when the process has just gone quiet (within half a
 *    second) and every 10 s while it is busy: free pages go back, no block in use is
 *    touched, and the cost is a walk of the free lists, arena by arena under its own lock.
 *
 * An operator who tunes malloc through the environment (GLIBC_TUNABLES with a glibc.malloc.*
 * setting, or a MALLOC_*_ variable) keeps their settings: then nothing here runs.
 * Only mallopt(3) and malloc_trim(3) with constant arguments; no memory is read or written. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THRESHOLD (128 * 1024)
#define TICK_MS 500
#define BUSY_PERMILLE 50
#define BUSY_TRIM_TICKS 20

static int operator_tuned(void) {
    static const char *const vars[] = {
        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
        "MALLOC_MMAP_MAX_",       "MALLOC_ARENA_MAX",       "MALLOC_ARENA_TEST",
    };
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (tunables != NULL && strstr(tunables, "glibc.malloc.") != NULL) {
        return 1;
    }
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        if (getenv(vars[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* CPU time in nanoseconds of the whole process, or of this thread. */
static long long cpu_ns(clockid_t clock) {
    struct timespec t;
    if (clock_gettime(clock, &t) != 0) {
        return 0;
    }
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Every TICK_MS: when the rest of the process used some CPU since the last trim (a
 * connection closed, a pool thread retired) and less than BUSY_PERMILLE of a core in the
 * last tick, trim; while busy, trim every BUSY_TRIM_TICKS ticks. An idle gateway is not
 * trimmed again and again; a gateway that just went quiet is trimmed within a tick. */
static void *trim_loop(void *unused) {
    (void)unused;
    long long last_other = 0, trimmed_at = -1;
    unsigned busy_ticks = 0;
    for (;;) {
        struct timespec left = {0, TICK_MS * 1000000L};
        while (nanosleep(&left, &left) != 0) {
        }
        long long other = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        long long used = other - last_other;
        last_other = other;
        int busy = used > (long long)TICK_MS * 1000000LL * BUSY_PERMILLE / 1000;
        if (busy) {
            if (++busy_ticks < BUSY_TRIM_TICKS) {
                continue;
            }
        } else if (other == trimmed_at) {
            continue;
        }
        busy_ticks = 0;
        trimmed_at = other;
        malloc_trim(0);
    }
    return NULL;
}

/* A small detached thread with every signal blocked (signals are the Rust side's). If it
 * cannot start, only the trimming is missing. */
static void start_trimmer(void) {
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0) {
        return;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&thread, &attr, trim_loop, NULL) == 0) {
        pthread_setname_np(thread, "noviqi-malloc");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

__attribute__((constructor)) static void noviqi_malloc_tune(void) {
    if (operator_tuned()) {
        return;
    }
    mallopt(M_MMAP_THRESHOLD, THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, THRESHOLD);
    start_trimmer();
}
