"""symgrad's thread pool (backends/c/threads.py, symgrad/templates/threads.c.j2): sized by the
environment, the same numbers with one thread or several, safe with many Python threads calling at
once and across fork(), asleep when idle, and each piece of a job run once whatever its timing."""
import os
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from symgrad.backends.c import compiler, threads

# Each scenario runs in a fresh process: the pool reads its size once per process.
_PRELUDE = textwrap.dedent("""
    import os, sys, tempfile
    import numpy as np
    import symgrad, symgrad.numpy as snp
    from symgrad.backends.c import threads

    def loss(W, X, b):
        h = snp.maximum(X @ W + b, 0.0)        # a wide product (gemm, split over the pool)
        return snp.sum(snp.exp(X @ W[:, :10] - 1.0)) + snp.sum(h * h)

    r = np.random.default_rng(0)
    W = 0.01 * r.standard_normal((500, 120))
    X = r.standard_normal((300, 500))
    b = r.standard_normal(120)
    f = symgrad.compile(loss, cache_dir=sys.argv[1])
""")


def _run(body, env=None, timeout=300):
    script = _PRELUDE + textwrap.dedent(body)
    full = {k: v for k, v in os.environ.items()
            if k not in ("SYMGRAD_NUM_THREADS", "OMP_NUM_THREADS")}
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", script, os.environ["SG_TEST_CACHE"]], env=full,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG_TEST_CACHE", str(tmp_path))


@pytest.mark.parametrize("env,count", [
    ({"SYMGRAD_NUM_THREADS": "3"}, "3"), ({"SYMGRAD_NUM_THREADS": "1"}, "1"),
    ({"OMP_NUM_THREADS": "1"}, "1"), ({"OMP_NUM_THREADS": "1", "SYMGRAD_NUM_THREADS": "2"}, "2")])
def test_the_environment_sizes_the_pool(env, count):
    assert _run("f.value_and_grad(W, X, b); print(threads.count())", env) == [count]


def test_the_pool_follows_the_affinity_mask():
    # `taskset -c 0` (or a scheduler's cpuset): one CPU, no pool.
    assert _run("""
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        f.value_and_grad(W, X, b); print(threads.count())""") == ["1"]


_VALUES = """
    v, g = f.value_and_grad(W, X, b)
    np.save(sys.argv[1] + "/out-%s.npy" % os.environ.get("SYMGRAD_NUM_THREADS"),
            np.concatenate([[v], np.ravel(g)]))
"""


def test_one_thread_and_several_give_the_same_numbers(tmp_path):
    for n in ("1", "2", "4"):
        _run(_VALUES, {"SYMGRAD_NUM_THREADS": n})
    one = np.load(tmp_path / "out-1.npy")
    for n in ("2", "4"):
        np.testing.assert_allclose(np.load(tmp_path / f"out-{n}.npy"), one, rtol=1e-12,
                                   atol=1e-12 * np.abs(one).max())
    # and against NumPy
    r = np.random.default_rng(0)
    W, X, b = 0.01 * r.standard_normal((500, 120)), r.standard_normal((300, 500)), \
        r.standard_normal(120)
    h = np.maximum(X @ W + b, 0.0)
    assert one[0] == pytest.approx(np.exp(X @ W[:, :10] - 1.0).sum() + (h * h).sum(), rel=1e-12)


def test_many_python_threads_at_once():
    assert _run("""
        from concurrent.futures import ThreadPoolExecutor
        want = f.value_and_grad(W, X, b)
        def call(_):
            return [f.value_and_grad(W, X, b) for _ in range(10)]
        with ThreadPoolExecutor(8) as pool:
            results = [r for batch in pool.map(call, range(16)) for r in batch]
        assert all(v == want[0] and np.array_equal(g, want[1]) for v, g in results)
        print("ok")""", {"SYMGRAD_NUM_THREADS": "2"}) == ["ok"]


def test_idle_workers_go_to_sleep():
    # After a job the workers watch for the next one for 0.1 ms (SYMGRAD_SPIN_NS in
    # threads.c.j2), then sleep: a process that stops calling uses no CPU. Three workers
    # spinning on would use 0.5 s of CPU or more in the half second measured (1.0 s here).
    cpu = _run("""
        import time
        for _ in range(20):
            f.value_and_grad(W, X, b)
        time.sleep(0.05)
        start = time.process_time()
        time.sleep(0.5)
        print(time.process_time() - start, threads.count())""", {"SYMGRAD_NUM_THREADS": "4"})
    assert cpu[1] == "4"
    assert float(cpu[0]) < 0.1


_STRESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
typedef void (*task_t)(void *job, int64_t lo, int64_t hi);
void symgrad_rt1_parallel_for(int64_t n, int64_t grain, double work, task_t task, void *job);

typedef struct { int *hits; long spin; } job_t;

static void task(void *data, int64_t lo, int64_t hi)
{
    job_t *job = data;
    for (int64_t i = lo; i < hi; ++i) {
        job->hits[i] += 1;
        for (volatile long s = 0; s < job->spin; ++s) {}
    }
}

/* Jobs of 1-64 items in pieces of 1-4, some short, some far longer than the pool's watch, some
 * after a pause longer than it: each item must be run once, by whichever thread. */
static void *caller(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    int hits[64];
    for (int round = 0; round < 2000; ++round) {
        const int n = 1 + rand_r(&seed) % 64;
        job_t job = {hits, rand_r(&seed) % 3 == 0 ? 20000 : rand_r(&seed) % 200};
        for (int i = 0; i < n; ++i)
            hits[i] = 0;
        symgrad_rt1_parallel_for(n, 1 + rand_r(&seed) % 4, 1e9, task, &job);
        for (int i = 0; i < n; ++i)
            if (hits[i] != 1) {
                printf("item %d of %d ran %d times\n", i, n, hits[i]);
                exit(1);
            }
        if (rand_r(&seed) % 50 == 0)
            usleep(rand_r(&seed) % 300);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[3];
    for (int k = 0; k < 3; ++k)
        pthread_create(&threads[k], NULL, caller, (void *)(uintptr_t)(k + 1));
    for (int k = 0; k < 3; ++k)
        pthread_join(threads[k], NULL);
    printf("ok\n");
    return 0;
}
"""


def test_the_pool_runs_every_piece_once_under_stress(tmp_path):
    # The pool's own C, driven directly: three threads calling at once (one uses the pool, the
    # others run alone), jobs whose pieces end before, during and after the workers' watch.
    (tmp_path / "pool.c").write_text(threads.source())
    (tmp_path / "stress.c").write_text(_STRESS)
    exe = tmp_path / "stress"
    subprocess.run([*shlex.split(compiler.find_compiler()), "-O2", "-pthread",
                    str(tmp_path / "stress.c"), str(tmp_path / "pool.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    for count in ("2", "3", "5"):
        out = subprocess.run([str(exe)], env={**os.environ, "SYMGRAD_NUM_THREADS": count},
                             capture_output=True, text=True, timeout=120)
        assert (out.returncode, out.stdout) == (0, "ok\n"), (count, out.stdout, out.stderr)


def test_fork_after_the_pool_started():
    # The parent's workers do not exist in the child: its first call must make new ones (or
    # it would wait forever for workers that never come).
    assert _run("""
        import multiprocessing as mp
        want = f.value_and_grad(W, X, b)
        def child(q):
            v, g = f.value_and_grad(W, X, b)
            q.put((v == want[0], bool(np.array_equal(g, want[1])), threads.count()))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=child, args=(q,)) for _ in range(3)]
        for p in procs: p.start()
        got = [q.get(timeout=120) for _ in procs]
        for p in procs: p.join(timeout=120)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        assert got == [(True, True, 3)] * 3, got
        v, g = f.value_and_grad(W, X, b)           # the parent's pool still works
        assert v == want[0]
        print("ok")""", {"SYMGRAD_NUM_THREADS": "3"}, timeout=300) == ["ok"]


def test_a_split_contraction_gives_the_same_bits_on_any_number_of_threads(tmp_path):
    # X @ W with k = 3000 > 4 max(40, 30): split over k in 3000 // 768 = 3 chunks (narrow.c.j2)
    # whatever the pool's size; the partial sums are added in chunk order, so the numbers are
    # the same to the last bit on 1, 2 or 3 threads (they differed when the chunks were as many
    # as the threads).
    body = """
        def long(W, X, b):
            return snp.sum(snp.tanh(X @ W + b) ** 2)
        r = np.random.default_rng(1)
        W, X = r.standard_normal((3000, 30)), r.standard_normal((40, 3000))
        b = r.standard_normal(30)
        g = symgrad.compile(long, argnums=2, cache_dir=sys.argv[1])
        v, gb = g.value_and_grad(W, X, b)
        np.save(sys.argv[1] + "/long-%s.npy" % os.environ["SYMGRAD_NUM_THREADS"],
                np.concatenate([[v], gb]))
        print(threads.count())
    """
    for n in ("1", "2", "3"):
        assert _run(body, {"SYMGRAD_NUM_THREADS": n}) == [n]
    one = np.load(tmp_path / "long-1.npy")
    for n in ("2", "3"):
        np.testing.assert_array_equal(np.load(tmp_path / f"long-{n}.npy"), one)
    r = np.random.default_rng(1)
    W, X = r.standard_normal((3000, 30)), r.standard_normal((40, 3000))
    b = r.standard_normal(30)
    t = np.tanh(X @ W + b)
    assert one[0] == pytest.approx((t ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(one[1:], (2 * t * (1 - t ** 2)).sum(axis=0), rtol=1e-10)
