#include "fault.h"

#include <errno.h>

static int countdown; /* atomic */

void gov_fault_set(int n)
{
    __atomic_store_n(&countdown, n, __ATOMIC_SEQ_CST);
}

int gov_fault_left(void)
{
    int n = __atomic_load_n(&countdown, __ATOMIC_SEQ_CST);
    return n > 0 ? n : 0;
}

int gov_fault(int err)
{
    if (__atomic_load_n(&countdown, __ATOMIC_RELAXED) <= 0 ||
        __atomic_sub_fetch(&countdown, 1, __ATOMIC_SEQ_CST) != 0)
        return 0;
    errno = err;
    return -1;
}
