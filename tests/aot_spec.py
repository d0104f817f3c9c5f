"""The SPEC that tests/test_aot.py builds: the softmax loss of API.md with N a run-time size."""
import symgrad
import symgrad.numpy as snp


def softmax_loss(W, X, y, reg):
    scores = X @ W
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)


def int(x, y):          # a Python name that is a C keyword: the build must mangle it
    return snp.sum(x * y)


def scaled_residual(x, s):   # a vector result: only a value function, no gradient
    return (x - 1.0) * s


symgrad.export(softmax_loss, "f64[30,10]", "f64[N,30]", "i64[N]", "f64[]")
symgrad.export(int, "f64[K]", "f64[K]", name="dot_int", argnums=(0, 1))
symgrad.export(scaled_residual, "f32[K]", "f32[]")
