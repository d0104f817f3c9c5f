/* Workspace: the intermediate arrays of a call live in one block of memory, kept between calls
 * (a fresh large malloc on every call costs page faults), when they are too many for the stack
 * or sized at run time (codegen.py, STACK_WORKSPACE_MAX). The kept blocks wait in a few slots
 * that the threads calling this library share: a call takes a block out of a slot (an atomic
 * exchange, so no two calls ever hold the same block), grows it if it needs more, and puts it
 * back into an empty slot when it returns. A block larger than SYMGRAD_WORKSPACE_KEEP bytes, or
 * one finding every slot full (more threads calling at once than there are slots), is freed
 * after its call instead. The kept blocks are freed when the library is unloaded. No locks: a
 * fork() in the middle of another thread's call leaves the child one block short, no more. */
#ifndef SYMGRAD_WORKSPACE_KEEP
#define SYMGRAD_WORKSPACE_KEEP ((size_t)1 << 30)
#endif
#define SYMGRAD_WORKSPACE_SLOTS 8

/* A block's header: its size. The workspace follows it, as strictly aligned as malloc's. */
typedef union {
    size_t size;
    long double align;
} symgrad_block;

static symgrad_block *symgrad_workspace_slots[SYMGRAD_WORKSPACE_SLOTS];

__attribute__((destructor)) static void symgrad_workspace_unload(void)
{
    for (int i = 0; i < SYMGRAD_WORKSPACE_SLOTS; ++i)
        free(__atomic_exchange_n(&symgrad_workspace_slots[i], NULL, __ATOMIC_ACQUIRE));
}

/* At least `bytes` bytes of workspace (never NULL for a request of 0), or NULL when out of
 * memory. Release it with symgrad_workspace_release(ws). */
static char *symgrad_workspace(size_t bytes)
{
    symgrad_block *block = NULL;
    if (bytes <= SYMGRAD_WORKSPACE_KEEP)
        for (int i = 0; i < SYMGRAD_WORKSPACE_SLOTS && block == NULL; ++i)
            block = __atomic_exchange_n(&symgrad_workspace_slots[i], NULL, __ATOMIC_ACQUIRE);
    if (block == NULL || block->size < bytes) {
        free(block);
        if (bytes > SIZE_MAX - sizeof *block)
            return NULL;
        block = (symgrad_block *)malloc(sizeof *block + bytes);
        if (block == NULL)
            return NULL;
        block->size = bytes;
    }
    return (char *)(block + 1);
}

static void symgrad_workspace_release(char *ws)
{
    symgrad_block *block = (symgrad_block *)ws - 1;
    if (block->size <= SYMGRAD_WORKSPACE_KEEP)
        for (int i = 0; i < SYMGRAD_WORKSPACE_SLOTS; ++i) {
            symgrad_block *empty = NULL;
            if (__atomic_compare_exchange_n(&symgrad_workspace_slots[i], &empty, block, false,
                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                return;
        }
    free(block);
}
