#ifdef SYMGRAD_USE_BLAS
/* Large matrix products call a CBLAS gemm (row-major, int sizes); without SYMGRAD_USE_BLAS they
 * run the loops written out below. The prototypes are declared here, so no BLAS header is
 * needed. The names default to scipy-openblas32's; for another CBLAS define them, e.g.
 * -DSYMGRAD_DGEMM=cblas_dgemm -DSYMGRAD_SGEMM=cblas_sgemm.
 *
 * symgrad's JIT builds (SYMGRAD_BLAS_AT_LOAD) do not link the BLAS: each declaration below
 * then declares a pointer this library exports (symgrad_blas_dgemm, symgrad_blas_dsyevd, ...),
 * which symgrad points at scipy-openblas32's function when it loads the library, before any
 * call (symgrad/backends/c/compiler.py, bind_blas). The link need not read the BLAS's library
 * for its symbols, ~7 ms of each build. */
#ifdef SYMGRAD_BLAS_AT_LOAD
#define SYMGRAD_DGEMM (*symgrad_blas_dgemm)
#define SYMGRAD_SGEMM (*symgrad_blas_sgemm)
#define SYMGRAD_LAPACKE(name) (*symgrad_blas_##name)
#endif
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
/* The factorizations of large matrices (symgrad/core/primitives/linalg.py) call LAPACKE,
 * row-major, with int sizes; SYMGRAD_LAPACKE(dsyevd) names scipy-openblas32's symbol unless
 * defined otherwise (e.g. -D'SYMGRAD_LAPACKE(name)=LAPACKE_##name' for a system LAPACKE). */
#ifndef SYMGRAD_LAPACKE
#define SYMGRAD_LAPACKE(name) scipy_LAPACKE_##name
#endif
int SYMGRAD_LAPACKE(dsyevd)(int layout, char jobz, char uplo, int n, double *a, int lda,
                            double *w);
int SYMGRAD_LAPACKE(ssyevd)(int layout, char jobz, char uplo, int n, float *a, int lda, float *w);
int SYMGRAD_LAPACKE(dgesdd)(int layout, char jobz, int m, int n, double *a, int lda, double *s,
                            double *u, int ldu, double *vt, int ldvt);
int SYMGRAD_LAPACKE(sgesdd)(int layout, char jobz, int m, int n, float *a, int lda, float *s,
                            float *u, int ldu, float *vt, int ldvt);
int SYMGRAD_LAPACKE(dgesv)(int layout, int n, int nrhs, double *a, int lda, int *ipiv, double *b,
                           int ldb);
int SYMGRAD_LAPACKE(sgesv)(int layout, int n, int nrhs, float *a, int lda, int *ipiv, float *b,
                           int ldb);
int SYMGRAD_LAPACKE(dgetrf)(int layout, int m, int n, double *a, int lda, int *ipiv);
int SYMGRAD_LAPACKE(sgetrf)(int layout, int m, int n, float *a, int lda, int *ipiv);
int SYMGRAD_LAPACKE(dpotrf)(int layout, char uplo, int n, double *a, int lda);
int SYMGRAD_LAPACKE(spotrf)(int layout, char uplo, int n, float *a, int lda);
int SYMGRAD_LAPACKE(dgeqrf)(int layout, int m, int n, double *a, int lda, double *tau);
int SYMGRAD_LAPACKE(sgeqrf)(int layout, int m, int n, float *a, int lda, float *tau);
int SYMGRAD_LAPACKE(dorgqr)(int layout, int m, int n, int k, double *a, int lda,
                            const double *tau);
int SYMGRAD_LAPACKE(sorgqr)(int layout, int m, int n, int k, float *a, int lda, const float *tau);
#endif
