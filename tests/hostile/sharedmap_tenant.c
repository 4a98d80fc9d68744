/* A tenant that writes a file through shared mappings, which no write call
 * sees: it makes FILE MIB MiB long (a hole) and, chunk after chunk until the
 * file is written or SECONDS have passed, maps 1 MiB of it shared and
 * writable, and in mode "remap" grows that mapping to 2 MiB with mremap,
 * fills the mapping and unmaps it. Prints the bytes it wrote and the
 * seconds it took.
 *
 *   sharedmap_tenant map|remap FILE MIB SECONDS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MiB (1L << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 64;
    int remap = strcmp(argv[1], "remap") == 0;
    long size = atol(argv[3]) * MiB, step = remap ? 2 * MiB : MiB;
    double start = now(), end = start + atof(argv[4]);
    int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, size) < 0)
        return 2;
    long done = 0;
    for (long at = 0; at + step <= size && now() < end; at += step) {
        char *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, at);
        if (p == MAP_FAILED)
            return 3;
        if (remap && (p = mremap(p, MiB, step, MREMAP_MAYMOVE)) == MAP_FAILED)
            return 4;
        memset(p, 'm', (size_t)step);
        munmap(p, (size_t)step);
        done += step;
    }
    printf("%ld %.3f\n", done, now() - start);
    return 0;
}
