#ifdef SYMGRAD_USE_BLAS
/* Large matrix products call a CBLAS gemm (row-major, int sizes); without SYMGRAD_USE_BLAS they
 * run the loops written out below. The prototypes are declared here, so no BLAS header is
 * needed. The names default to scipy-openblas32's, which symgrad's JIT builds link; for another
 * CBLAS define them, e.g. -DSYMGRAD_DGEMM=cblas_dgemm -DSYMGRAD_SGEMM=cblas_sgemm. */
#ifndef SYMGRAD_DGEMM
#define SYMGRAD_DGEMM scipy_cblas_dgemm
#endif
#ifndef SYMGRAD_SGEMM
#define SYMGRAD_SGEMM scipy_cblas_sgemm
#endif
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
void SYMGRAD_DGEMM(int order, int trans_a, int trans_b, int m, int n, int k, double alpha,
                   const double *a, int lda, const double *b, int ldb, double beta, double *c,
                   int ldc);
void SYMGRAD_SGEMM(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c,
                   int ldc);
#endif
