/* Workspace: the intermediate arrays of a call live in one block of memory. Each thread keeps
 * its block between calls (a fresh large malloc on every call costs page faults), growing it
 * when a call needs more. A block larger than SYMGRAD_WORKSPACE_KEEP bytes is freed after the
 * call instead. A thread's block is freed when the thread exits. */
#include <pthread.h>

#ifndef SYMGRAD_WORKSPACE_KEEP
#define SYMGRAD_WORKSPACE_KEEP ((size_t)1 << 30)
#endif

typedef struct {
    char *data;
    size_t size;
} symgrad_block;

static pthread_key_t symgrad_workspace_key;
static pthread_once_t symgrad_workspace_once = PTHREAD_ONCE_INIT;
static int symgrad_workspace_kept;      /* whether the key exists: blocks are kept */

static void symgrad_block_free(void *p)
{
    symgrad_block *block = (symgrad_block *)p;
    free(block->data);
    free(block);
}

static void symgrad_workspace_init(void)
{
    symgrad_workspace_kept = pthread_key_create(&symgrad_workspace_key, symgrad_block_free) == 0;
}

/* Unloading this library: free this thread's block and delete the key, so that no thread
 * calls a destructor that is no longer mapped (other threads' blocks are left behind). */
__attribute__((destructor)) static void symgrad_workspace_unload(void)
{
    if (symgrad_workspace_kept) {
        symgrad_block *block = (symgrad_block *)pthread_getspecific(symgrad_workspace_key);
        if (block != NULL)
            symgrad_block_free(block);
        pthread_key_delete(symgrad_workspace_key);
        symgrad_workspace_kept = 0;
    }
}

static int symgrad_keeps(size_t bytes)
{
    pthread_once(&symgrad_workspace_once, symgrad_workspace_init);
    return symgrad_workspace_kept && bytes <= SYMGRAD_WORKSPACE_KEEP;
}

/* At least `bytes` bytes of workspace (never NULL for a request of 0), or NULL when out of
 * memory. Release it with symgrad_workspace_release(ws, bytes). */
static char *symgrad_workspace(size_t bytes)
{
    char *ws;
    if (!symgrad_keeps(bytes)) {
        ws = (char *)malloc(bytes > 0 ? bytes : 1);
    } else {
        symgrad_block *block = (symgrad_block *)pthread_getspecific(symgrad_workspace_key);
        if (block == NULL) {
            block = (symgrad_block *)calloc(1, sizeof *block);
            if (block == NULL)
                return NULL;
            if (pthread_setspecific(symgrad_workspace_key, block) != 0) {
                free(block);
                return NULL;
            }
        }
        if (block->size < bytes || block->data == NULL) {
            free(block->data);
            block->data = (char *)malloc(bytes > 0 ? bytes : 1);
            block->size = block->data != NULL ? bytes : 0;
        }
        ws = block->data;
    }
#ifdef SYMGRAD_POISON_WORKSPACE
    /* Testing: fill the workspace with NaNs, so code reading what it never wrote shows up. */
    if (ws != NULL)
        memset(ws, 0xff, bytes);
#endif
    return ws;
}

static void symgrad_workspace_release(char *ws, size_t bytes)
{
    if (!symgrad_keeps(bytes))
        free(ws);
}
