// The numerical kernels of the error-feedback solver (nvfp4_feedback.c), one table per
// instruction set; nvfp4_factor.c drives them. Internal to the C target.
//
// Every kernel computes each element as a chain of fused multiply-adds, x = fma(-a_k, b_k, x),
// in increasing k (then at most one IEEE division or square root), whatever the vector width,
// tile or thread that computes it: the portable copy (fmaf) and the AVX2+FMA copy give the
// same bits.
#ifndef NVFP4_FEEDBACK_OPS_H
#define NVFP4_FEEDBACK_OPS_H

#include <stddef.h>

typedef struct {
    const char *name;
    /// c[r][j] = fma(-a[r][k], b[k][j], c[r][j]) for k = 0, 1, … < inner; r < rows, j < cols.
    void (*gemm)(float *c, size_t cs, const float *a, size_t as, const float *b, size_t bs,
                 size_t rows, size_t inner, size_t cols);
    /// Forward substitution with the lower-triangular w×w `l`, columns [c0, c1) of the w rows of
    /// x: x[j][c] = (x[j][c] − Σ_{k<j} l[j][k]·x[k][c]) / l[j][j], fused, k increasing.
    void (*lower_solve)(float *x, size_t xs, const float *l, size_t ls, size_t w, size_t c0, size_t c1);
    /// In-place unblocked lower Cholesky of the w×w block `a` (lower triangle read and written):
    /// returns -1 or the first row whose pivot is not positive and finite.
    long (*cholesky)(float *a, size_t as, size_t w);
    /// nvfp4_feedback_block (nvfp4_kernel.h).
    void (*block)(float *w, size_t ws, const float *u, size_t us, const float *reciprocals, const float *factors,
                  size_t ss, float *errors, size_t es, size_t rows, size_t cols);
} feedback_ops;

/// The table for this CPU (or the portable one while nvfp4_feedback_force_portable is on).
const feedback_ops *nvfp4_feedback_ops(void);

#endif
