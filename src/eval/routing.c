/*
 * routing.c - the summaries of the routing literature over a policy's
 * cost-quality points: the non-decreasing convex hull and AIQ of
 * RouterBench (Hu et al. 2024), and APGR and CPT of RouteLLM (Ong et al.
 * 2024). docs/evaluation.md gives the definitions with worked values.
 */
#include "dynrag/eval.h"
#include "core/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cost ascending, then quality descending (the best point of a cost first). */
static int cmp_point(const void *a, const void *b)
{
    const dynrag_eval_point *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost < y->cost ? -1 : 1;
    if (x->quality != y->quality)
        return x->quality > y->quality ? -1 : 1;
    return 0;
}

/* > 0 when b turns left of o->a (a lies below the segment o->b). */
static double cross(dynrag_eval_point o, dynrag_eval_point a, dynrag_eval_point b)
{
    return (a.cost - o.cost) * (b.quality - o.quality) -
           (a.quality - o.quality) * (b.cost - o.cost);
}

size_t dynrag_eval_hull(const dynrag_eval_point *pts, size_t n, dynrag_eval_point *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(pts[i].cost) && isfinite(pts[i].quality))
            out[m++] = pts[i];
    qsort(out, m, sizeof *out, cmp_point);
    /* Monotone chain over the points that raise quality; out doubles as
     * the stack (k <= i always). */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        dynrag_eval_point p = out[i];
        if (k > 0 && p.quality <= out[k - 1].quality)
            continue;
        while (k >= 2 && cross(out[k - 2], out[k - 1], p) >= 0)
            k--;
        out[k++] = p;
    }
    return k;
}

/* The curve of a hull at cost c (see dynrag_eval_aiq). */
static double curve_at(const dynrag_eval_point *h, size_t m, double c)
{
    if (c < h[0].cost)
        return 0;
    for (size_t i = 0; i + 1 < m; i++)
        if (c < h[i + 1].cost)
            return h[i].quality + (h[i + 1].quality - h[i].quality) * (c - h[i].cost) /
                                      (h[i + 1].cost - h[i].cost);
    return h[m - 1].quality;
}

double dynrag_eval_aiq(const dynrag_eval_point *pts, size_t n, double c_lo, double c_hi)
{
    dynrag_eval_point *h = dr_malloc((n ? n : 1) * sizeof *h);
    if (h == NULL)
        return NAN;
    size_t m = dynrag_eval_hull(pts, n, h);
    double r = NAN;
    if (m == 0) {
        dr_free(h);
        return NAN;
    }
    if (!(c_hi > c_lo)) {
        r = curve_at(h, m, c_lo);
        dr_free(h);
        return r;
    }
    /* The curve is linear between consecutive breakpoints (the hull's
     * costs inside the range), with a jump at the first: the midpoint rule is
     * exact on each piece. */
    double area = 0, a = c_lo;
    for (size_t i = 0; i <= m; i++) {
        double b = i < m ? h[i].cost : c_hi;
        if (b <= a)
            continue;
        b = fmin(b, c_hi);
        area += (b - a) * curve_at(h, m, (a + b) / 2);
        a = b;
    }
    dr_free(h);
    return area / (c_hi - c_lo);
}

/* PGR of quality q for the pair. */
static double pgr(double q, double q_weak, double q_strong)
{
    return (q - q_weak) / (q_strong - q_weak);
}

typedef struct xp {
    double x, p;
} xp;

static int cmp_xp(const void *a, const void *b)
{
    const xp *u = a, *v = b;
    return u->x < v->x ? -1 : u->x > v->x ? 1 : 0;
}

double dynrag_eval_apgr(const double *x, const double *q, size_t n, double q_weak, double q_strong)
{
    if (n == 0 || !(q_strong > q_weak))
        return NAN;
    xp *v = dr_malloc(n * sizeof *v);
    if (v == NULL)
        return NAN;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(q[i]))
            v[m++] = (xp){fmin(fmax(x[i], 0), 1), pgr(q[i], q_weak, q_strong)};
    qsort(v, m, sizeof *v, cmp_xp);
    /* A step function: the running best PGR from each point's x to the next. */
    double best = 0, area = 0;
    for (size_t i = 0; i < m; i++) {
        best = fmax(best, v[i].p);
        double next = i + 1 < m ? v[i + 1].x : 1;
        area += best * (next - v[i].x);
    }
    dr_free(v);
    return area;
}

double dynrag_eval_cpt(const double *x, const double *q, size_t n, double q_weak, double q_strong,
                       double target)
{
    if (n == 0 || !(q_strong > q_weak))
        return NAN;
    double best = NAN;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(q[i]) && pgr(q[i], q_weak, q_strong) >= target - 1e-12 &&
            !(x[i] >= best))
            best = fmin(fmax(x[i], 0), 1);
    return best;
}
