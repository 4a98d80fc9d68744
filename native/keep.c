#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keep.h"

#define MAGIC "govkeep1"

struct gov_keep_head {
    char magic[8];
    uint32_t head_size, rec_size, usage_size, nslots;
    uint64_t seq;              /* arrival order of the last call recorded */
    uint32_t top;              /* slots [0, top) have been used */
    uint32_t has_id;           /* last_id is known */
    uint64_t last_id;          /* the id of the last call recorded */
    struct gov_usage usage;    /* the group's usage at the last record change */
};

struct gov_keep {
    struct gov_keep_head *head;
    struct gov_keep_rec *rec;
    size_t len;
    int *free;                 /* free slots below top (a stack) */
    int nfree, cap;
};

static size_t map_len(void)
{
    return sizeof(struct gov_keep_head) + (size_t)GOV_KEEP_SLOTS * sizeof(struct gov_keep_rec);
}

static int same_layout(const struct gov_keep_head *h)
{
    return memcmp(h->magic, MAGIC, 8) == 0 && h->head_size == sizeof *h &&
           h->rec_size == sizeof(struct gov_keep_rec) &&
           h->usage_size == sizeof(struct gov_usage) && h->nslots == GOV_KEEP_SLOTS &&
           h->top <= GOV_KEEP_SLOTS;
}

static int reserve(struct gov_keep *k, int n)
{
    if (n <= k->cap)
        return 0;
    int cap = k->cap ? k->cap : 64;
    while (cap < n)
        cap *= 2;
    int *p = realloc(k->free, (size_t)cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    k->free = p;
    k->cap = cap;
    return 0;
}

int gov_keep_open(const char *path, int resume, struct gov_usage *u, struct gov_keep **out)
{
    struct gov_keep *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat st;
    int rc = fd < 0 || fstat(fd, &st) < 0 ? -errno : 0;
    k->len = map_len();
    if (rc == 0 && (size_t)st.st_size != k->len) {
        resume = 0; /* not a record file of this layout */
        rc = ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)k->len) < 0 ? -errno : 0;
    }
    void *m = MAP_FAILED;
    if (rc == 0) {
        m = mmap(NULL, k->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            rc = -errno;
    }
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        free(k);
        return rc;
    }
    k->head = m;
    k->rec = (struct gov_keep_rec *)(k->head + 1);
    resume = resume && same_layout(k->head);
    if (!resume) {
        /* Only the pages once used are touched, the rest stays a hole. */
        uint32_t top = k->head->top;
        memset(k->rec, 0, (size_t)(top < GOV_KEEP_SLOTS ? top : GOV_KEEP_SLOTS) * sizeof *k->rec);
        memset(k->head, 0, sizeof *k->head);
        memcpy(k->head->magic, MAGIC, 8);
        k->head->head_size = sizeof *k->head;
        k->head->rec_size = sizeof *k->rec;
        k->head->usage_size = sizeof *u;
        k->head->nslots = GOV_KEEP_SLOTS;
    } else {
        *u = k->head->usage;
        if (reserve(k, (int)k->head->top) < 0) {
            gov_keep_close(k);
            return -ENOMEM;
        }
        for (int i = (int)k->head->top - 1; i >= 0; i--)
            if (k->rec[i].state == GOV_KEEP_FREE)
                k->free[k->nfree++] = i;
    }
    *out = k;
    return resume;
}

void gov_keep_close(struct gov_keep *k)
{
    if (!k)
        return;
    munmap(k->head, k->len);
    free(k->free);
    free(k);
}

void gov_keep_usage(struct gov_keep *k, const struct gov_usage *u)
{
    memcpy(&k->head->usage, u, sizeof *u);
}

int gov_keep_note(struct gov_keep *k, uint64_t id, int pid, int nr, uint32_t arch,
                  const uint64_t *args, const struct gov_usage *u)
{
    int slot;
    if (k->nfree) {
        slot = k->free[--k->nfree];
    } else {
        if (k->head->top == GOV_KEEP_SLOTS || reserve(k, (int)k->head->top + 1) < 0)
            return -1;
        slot = (int)k->head->top++;
    }
    struct gov_keep_rec *r = &k->rec[slot];
    r->arch = arch;
    r->id = id;
    r->seq = ++k->head->seq;
    r->pid = pid;
    r->nr = nr;
    memcpy(r->args, args, sizeof r->args);
    gov_keep_usage(k, u);
    __atomic_store_n(&r->state, GOV_KEEP_RECEIVED, __ATOMIC_RELEASE);
    /* After the record: a kill in between leaves the record, found anyway. */
    k->head->last_id = id;
    __atomic_store_n(&k->head->has_id, 1, __ATOMIC_RELEASE);
    return slot;
}

void gov_keep_charged(struct gov_keep *k, int slot, const struct gov_usage *u)
{
    gov_keep_usage(k, u);
    __atomic_store_n(&k->rec[slot].state, GOV_KEEP_CHARGED, __ATOMIC_RELEASE);
}

void gov_keep_clear(struct gov_keep *k, int slot, const struct gov_usage *u)
{
    uint32_t was = __atomic_exchange_n(&k->rec[slot].state, GOV_KEEP_FREE, __ATOMIC_RELEASE);
    gov_keep_usage(k, u);
    if (was != GOV_KEEP_FREE)
        k->free[k->nfree++] = slot; /* room: nfree < top <= cap */
}

static int by_seq(const void *a, const void *b, void *recs)
{
    const struct gov_keep_rec *r = recs;
    uint64_t x = r[*(const int *)a].seq, y = r[*(const int *)b].seq;
    return x < y ? -1 : x > y;
}

int gov_keep_pending(struct gov_keep *k, int *slots, int max)
{
    int n = 0;
    for (int i = 0; i < (int)k->head->top && n < max; i++)
        if (k->rec[i].state != GOV_KEEP_FREE)
            slots[n++] = i;
    qsort_r(slots, (size_t)n, sizeof *slots, by_seq, k->rec);
    return n;
}

int gov_keep_last_id(struct gov_keep *k, uint64_t *id)
{
    *id = k->head->last_id;
    return (int)k->head->has_id;
}

const struct gov_keep_rec *gov_keep_rec(struct gov_keep *k, int slot)
{
    return &k->rec[slot];
}
