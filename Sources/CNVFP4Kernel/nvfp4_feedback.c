// Dense linear algebra of the error-feedback solver (`--method gptq`): the Cholesky factor of
// the inverse input second moments and the lazy block update. Every result is exact in the
// sense of nvfp4_kernel.c: the same fp32 operations in the same order whatever vector width
// runs them (no FMA contraction; reductions use 8 fixed lanes summed in a fixed order), so the
// bytes written never depend on the machine.
#include <math.h>
#include <string.h>

#include "nvfp4_kernel.h"

#pragma clang fp contract(off)

typedef float f32x8 __attribute__((ext_vector_type(8)));
#define INLINE static inline __attribute__((always_inline))

// Σ a[k]·b[k] for k < n: 8 lanes (lane l sums k ≡ l mod 8 in order), then the lanes in a fixed tree.
INLINE float dot_body(const float *a, const float *b, size_t n) {
    f32x8 acc = 0;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        f32x8 x, y;
        memcpy(&x, a + k, sizeof x);
        memcpy(&y, b + k, sizeof y);
        acc += x * y;
    }
    float lanes[8];
    memcpy(lanes, &acc, sizeof lanes);
    for (size_t l = 0; k < n; k++, l++) lanes[l] += a[k] * b[k];
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

INLINE long cholesky_body(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float *ri = a + i * n;
        for (size_t j = 0; j < i; j++) {
            const float *rj = a + j * n;
            ri[j] = (ri[j] - dot_body(ri, rj, j)) / rj[j];
        }
        float d = ri[i] - dot_body(ri, ri, i);
        if (!(d > 0) || !isfinite(d)) return (long)i;
        ri[i] = sqrtf(d);
        for (size_t j = i + 1; j < n; j++) ri[j] = 0;
    }
    return -1;
}

INLINE void invert_lower_body(const float *l, float *x, size_t n) {
    memset(x, 0, n * n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float *xi = x + i * n;
        const float *li = l + i * n;
        // xi[0..<i] = −Σ_{k<i} l[i][k] · x[k][0..<k+1], k in order, then divided by l[i][i].
        for (size_t k = 0; k < i; k++) {
            const float c = li[k];
            const float *xk = x + k * n;
            for (size_t j = 0; j <= k; j++) xi[j] -= c * xk[j];
        }
        const float d = li[i];
        for (size_t j = 0; j < i; j++) xi[j] = xi[j] / d;
        xi[i] = 1.0f / d;
    }
}

// Column tile of the block update: the tile of `u` (inner × tile floats) stays in L2.
#define TILE 512

INLINE void subtract_body(
    float *w, size_t w_stride, const float *e, size_t e_stride, const float *u, size_t u_stride,
    size_t rows, size_t inner, size_t columns) {
    for (size_t c0 = 0; c0 < columns; c0 += TILE) {
        const size_t c1 = c0 + TILE < columns ? c0 + TILE : columns;
        for (size_t r = 0; r < rows; r++) {
            float *wr = w + r * w_stride;
            const float *er = e + r * e_stride;
            for (size_t k = 0; k < inner; k++) {
                const float ek = er[k];
                const float *uk = u + k * u_stride;
                for (size_t c = c0; c < c1; c++) wr[c] -= ek * uk[c];
            }
        }
    }
}

#define FEEDBACK_VARIANT(suffix, attributes) \
    attributes static long cholesky_##suffix(float *a, size_t n) { return cholesky_body(a, n); } \
    attributes static void invert_##suffix(const float *l, float *x, size_t n) { invert_lower_body(l, x, n); } \
    attributes static void subtract_##suffix(float *w, size_t ws, const float *e, size_t es, const float *u, size_t us, \
                                             size_t rows, size_t inner, size_t columns) { \
        subtract_body(w, ws, e, es, u, us, rows, inner, columns); \
    }

FEEDBACK_VARIANT(baseline, )

#if defined(__x86_64__) && defined(__clang__)
FEEDBACK_VARIANT(avx2, __attribute__((target("avx2"))))
static int use_avx2(void) {
    static int cached = -1;
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}
#define DISPATCH(name, ...) (use_avx2() ? name##_avx2(__VA_ARGS__) : name##_baseline(__VA_ARGS__))
#else
#define DISPATCH(name, ...) name##_baseline(__VA_ARGS__)
#endif

long nvfp4_cholesky_lower(float *a, size_t n) { return DISPATCH(cholesky, a, n); }
void nvfp4_invert_lower(const float *l, float *x, size_t n) { DISPATCH(invert, l, x, n); }
void nvfp4_feedback_subtract(
    float *w, size_t w_stride, const float *e, size_t e_stride, const float *u, size_t u_stride,
    size_t rows, size_t inner, size_t columns) {
    DISPATCH(subtract, w, w_stride, e, e_stride, u, u_stride, rows, inner, columns);
}
