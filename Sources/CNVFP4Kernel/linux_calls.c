// Linux calls that Swift's Glibc module does not export (they need _GNU_SOURCE).
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "nvfp4_kernel.h"

int nvfp4_start_writeback(int fd, long long offset, long long length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

int nvfp4_affinity_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
#else
    return 0;
#endif
}

int nvfp4_set_direct_io(int fd, int on) {
#if defined(__linux__) && defined(O_DIRECT)
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
    return fcntl(fd, F_SETFL, flags);
#else
    (void)fd; (void)on;
    return -1;
#endif
}

int nvfp4_release_freed_memory(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
