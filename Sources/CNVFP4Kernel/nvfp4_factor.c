// The blocked factor of the error-feedback solver: a right-looking Cholesky factor and a
// triangular inverse, both in panels of NB columns whose bulk is the matrix product of
// nvfp4_feedback.c, spread over threads. Every element is computed by one thread as a chain of
// fused multiply-adds in increasing k (feedback_ops.h), so the result does not depend on the
// thread count, the panel schedule or the vector width.
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "feedback_ops.h"
#include "nvfp4_kernel.h"

/// Columns per panel.
#define NB 128
/// Rows per task of the trailing update; columns per task of a forward substitution or product.
#define TASK_ROWS 48
#define TASK_COLS 256

typedef void (*task_fn)(void *context, size_t item);

typedef struct {
    task_fn run;
    void *context;
    size_t count;
    atomic_size_t next;
} task_queue;

static void *drain(void *p) {
    task_queue *q = p;
    for (size_t i; (i = atomic_fetch_add(&q->next, 1)) < q->count;) q->run(q->context, i);
    return NULL;
}

/// Runs run(context, i) for i < count on up to `threads` threads (the caller's among them).
static void parallel(task_fn run, void *context, size_t count, int threads) {
    task_queue q = {run, context, count, 0};
    size_t extra = threads > 1 ? (size_t)threads - 1 : 0;
    if (extra > count - (count > 0)) extra = count > 0 ? count - 1 : 0;
    if (extra > 63) extra = 63;
    pthread_t workers[63];
    size_t started = 0;
    for (; started < extra; started++)
        if (pthread_create(&workers[started], NULL, drain, &q) != 0) break;
    drain(&q);
    for (size_t t = 0; t < started; t++) pthread_join(workers[t], NULL);
}

typedef struct {
    const feedback_ops *ops;
    float *a;
    const float *l;
    float *x;
    float *panel;
    size_t n, p0, p1, i0, i1;
} factor_step;

/// Forward substitution of the transposed panel, columns [TASK_COLS·item, …) of rows ≥ p1.
static void panel_task(void *context, size_t item) {
    factor_step *s = context;
    const size_t c0 = s->p1 + item * TASK_COLS, c1 = c0 + TASK_COLS < s->n ? c0 + TASK_COLS : s->n;
    s->ops->lower_solve(s->panel, s->n, s->a + s->p0 * s->n + s->p0, s->n, s->p1 - s->p0, c0, c1);
}

/// Trailing update of rows [p1 + TASK_ROWS·item, …), lower part: a[i][c] −= Σ_k a[i][p0+k]·panel[k][c].
static void trailing_task(void *context, size_t item) {
    factor_step *s = context;
    const size_t r0 = s->p1 + item * TASK_ROWS, r1 = r0 + TASK_ROWS < s->n ? r0 + TASK_ROWS : s->n;
    s->ops->gemm(s->a + r0 * s->n + s->p1, s->n, s->a + r0 * s->n + s->p0, s->n, s->panel + s->p1, s->n,
                 r1 - r0, s->p1 - s->p0, r1 - s->p1);
}

long nvfp4_cholesky_lower(float *a, size_t n, int threads) {
    const feedback_ops *ops = nvfp4_feedback_ops();
    float *panel = malloc((n < NB ? n : NB) * n * sizeof(float));
    if (!panel && n > 0) abort();
    long failed = -1;
    for (size_t p0 = 0; p0 < n && failed < 0; p0 += NB) {
        const size_t p1 = p0 + NB < n ? p0 + NB : n, w = p1 - p0;
        // The diagonal block has every update of earlier panels: factor it.
        long f = ops->cholesky(a + p0 * n + p0, n, w);
        if (f >= 0) { failed = (long)p0 + f; break; }
        // The panel below it, transposed (panel[k][i] = a[i][p0+k]), solved against it.
        for (size_t i = p1; i < n; i++)
            for (size_t k = 0; k < w; k++) panel[k * n + i] = a[i * n + p0 + k];
        factor_step s = {.ops = ops, .a = a, .panel = panel, .n = n, .p0 = p0, .p1 = p1};
        parallel(panel_task, &s, (n - p1 + TASK_COLS - 1) / TASK_COLS, threads);
        for (size_t i = p1; i < n; i++)
            for (size_t k = 0; k < w; k++) a[i * n + p0 + k] = panel[k * n + i];
        parallel(trailing_task, &s, (n - p1 + TASK_ROWS - 1) / TASK_ROWS, threads);
    }
    free(panel);
    if (failed < 0)
        for (size_t i = 0; i < n; i++) memset(a + i * n + i + 1, 0, (n - i - 1) * sizeof(float));
    return failed;
}

/// x[I][c0..<c1] −= l[I][k]·x[k][c0..<c1] for k in [c0, i0): x[k][c] = 0 for k < c, so the
/// columns of a tile need only the rows from its first column on.
static void inverse_product_task(void *context, size_t item) {
    factor_step *s = context;
    const size_t c0 = item * TASK_COLS, c1 = c0 + TASK_COLS < s->i0 ? c0 + TASK_COLS : s->i0, n = s->n;
    s->ops->gemm(s->x + s->i0 * n + c0, n, s->l + s->i0 * n + c0, n, s->x + c0 * n + c0, n, s->i1 - s->i0,
                 s->i0 - c0, c1 - c0);
}

/// Forward substitution of the row block against its diagonal block, columns [TASK_COLS·item, …) < i1.
static void inverse_solve_task(void *context, size_t item) {
    factor_step *s = context;
    const size_t c0 = item * TASK_COLS, c1 = c0 + TASK_COLS < s->i1 ? c0 + TASK_COLS : s->i1, n = s->n;
    s->ops->lower_solve(s->x + s->i0 * n, n, s->l + s->i0 * n + s->i0, n, s->i1 - s->i0, c0, c1);
}

void nvfp4_invert_lower(const float *l, float *x, size_t n, int threads) {
    const feedback_ops *ops = nvfp4_feedback_ops();
    memset(x, 0, n * n * sizeof(float));
    for (size_t i0 = 0; i0 < n; i0 += NB) {
        const size_t i1 = i0 + NB < n ? i0 + NB : n;
        factor_step s = {.ops = ops, .l = l, .x = x, .n = n, .i0 = i0, .i1 = i1};
        // x[I][0..<i0] = −l[I][0..<i0]·x[0..<i0][0..<i0]; then x[I] solved against l[I][I] with I's identity.
        parallel(inverse_product_task, &s, (i0 + TASK_COLS - 1) / TASK_COLS, threads);
        for (size_t i = i0; i < i1; i++) x[i * n + i] = 1;
        parallel(inverse_solve_task, &s, (i1 + TASK_COLS - 1) / TASK_COLS, threads);
        for (size_t i = i0; i < i1; i++) memset(x + i * n + i + 1, 0, (i1 - i - 1) * sizeof(float));
    }
}
