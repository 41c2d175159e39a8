/* test_eval_outcomes.c - evaluation on outcome tables: the routing-literature
 * summaries (hull, AIQ, APGR, CPT) against hand-computed values and as
 * properties over generated point sets. */
#include "test.h"

#include "core/util.h"
#include "dynrag/eval.h"

TEST(eval_aiq_hull_hand_values)
{
    /* Sorted: (1,.5) (1,.3) (2,.6) (2.5,.5) (3,.9) (4,.8). (2,.6) lies below
     * the segment (1,.5)-(3,.9) (0.7 at cost 2); the rest lower quality. */
    const dynrag_eval_point p[] = {{3, 0.9}, {1, 0.5}, {2, 0.6}, {4, 0.8}, {1, 0.3}, {2.5, 0.5}};
    dynrag_eval_point h[6];
    size_t m = dynrag_eval_hull(p, 6, h);
    ASSERT_EQ(m, 2);
    ASSERT_NEAR(h[0].cost, 1, 0);
    ASSERT_NEAR(h[0].quality, 0.5, 0);
    ASSERT_NEAR(h[1].cost, 3, 0);
    ASSERT_NEAR(h[1].quality, 0.9, 0);
    /* [1,4]: 1..3 from .5 to .9 (area 1.4), 3..4 flat .9: 2.3 / 3. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 1, 4), 2.3 / 3, 1e-12);
    /* [0,4]: nothing below cost 1. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 0, 4), 2.3 / 4, 1e-12);
    /* [2,3]: .7 to .9. */
    ASSERT_NEAR(dynrag_eval_aiq(p, 6, 2, 3), 0.8, 1e-12);
    /* A single point: 0 below its cost, its quality from there on. */
    const dynrag_eval_point one[] = {{2, 0.7}};
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 1, 3), 0.35, 1e-12);
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 2, 5), 0.7, 1e-12);
    /* An empty range: the curve's value there (no costs recorded at all). */
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 2, 2), 0.7, 0);
    ASSERT_NEAR(dynrag_eval_aiq(one, 1, 1, 1), 0, 0);
    const dynrag_eval_point zero[] = {{0, 0.4}, {0, 0.6}, {0, 0.5}};
    ASSERT_NEAR(dynrag_eval_aiq(zero, 3, 0, 0), 0.6, 0);
    /* Non-finite points are ignored; none left gives NAN. */
    const dynrag_eval_point bad[] = {{NAN, 0.4}, {1, INFINITY}};
    ASSERT(isnan(dynrag_eval_aiq(bad, 2, 0, 1)));
    ASSERT_EQ(dynrag_eval_hull(bad, 2, h), 0);
}

TEST(eval_aiq_hull_properties)
{
    dr_rng rng;
    dr_rng_seed(&rng, 42);
    dynrag_eval_point p[40], h[40], sub[40];
    for (int round = 0; round < 500; round++) {
        size_t n = 1 + (size_t)dr_rng_below(&rng, 40);
        for (size_t i = 0; i < n; i++) {
            /* Some repeated costs to exercise ties. */
            p[i].cost = dr_rng_below(&rng, 4) == 0 ? (double)dr_rng_below(&rng, 5)
                                                   : dr_rng_uniform(&rng) * 5;
            p[i].quality = dr_rng_uniform(&rng);
        }
        size_t m = dynrag_eval_hull(p, n, h);
        ASSERT(m >= 1 && m <= n);
        /* Strictly increasing in cost and quality, slopes non-increasing. */
        for (size_t i = 1; i < m; i++) {
            ASSERT_LT(h[i - 1].cost, h[i].cost);
            ASSERT_LT(h[i - 1].quality, h[i].quality);
            if (i >= 2) {
                double s1 = (h[i - 1].quality - h[i - 2].quality) / (h[i - 1].cost - h[i - 2].cost);
                double s2 = (h[i].quality - h[i - 1].quality) / (h[i].cost - h[i - 1].cost);
                ASSERT(s2 <= s1 + 1e-9);
            }
        }
        /* Starts at the best of the cheapest points; ends at the best point. */
        double cmin = INFINITY, qbest = -1, qcheap = -1;
        for (size_t i = 0; i < n; i++)
            cmin = fmin(cmin, p[i].cost);
        for (size_t i = 0; i < n; i++) {
            qbest = fmax(qbest, p[i].quality);
            if (p[i].cost == cmin)
                qcheap = fmax(qcheap, p[i].quality);
        }
        ASSERT_NEAR(h[0].cost, cmin, 0);
        ASSERT_NEAR(h[0].quality, qcheap, 0);
        ASSERT_NEAR(h[m - 1].quality, qbest, 0);
        /* Every point lies on or below the curve. */
        for (size_t i = 0; i < n; i++) {
            double c = p[i].cost;
            double y = h[m - 1].quality;
            for (size_t k = 0; k + 1 < m; k++)
                if (c < h[k + 1].cost) {
                    y = h[k].quality + (h[k + 1].quality - h[k].quality) * (c - h[k].cost) /
                                           (h[k + 1].cost - h[k].cost);
                    break;
                }
            ASSERT(p[i].quality <= y + 1e-9);
        }
        /* AIQ: within [0, best quality]; a subset never scores higher. */
        double lo = dr_rng_uniform(&rng) * 2, hi = lo + dr_rng_uniform(&rng) * 4;
        double a = dynrag_eval_aiq(p, n, lo, hi);
        ASSERT(a >= -1e-12 && a <= qbest + 1e-12);
        size_t ns = 0;
        for (size_t i = 0; i < n; i++)
            if (dr_rng_below(&rng, 2))
                sub[ns++] = p[i];
        if (ns > 0)
            ASSERT(dynrag_eval_aiq(sub, ns, lo, hi) <= a + 1e-9);
        /* The hull's own AIQ equals the points' (the hull is the curve). */
        ASSERT_NEAR(dynrag_eval_aiq(h, m, lo, hi), a, 1e-9);
    }
}

TEST(eval_apgr_cpt_hand_values_and_properties)
{
    /* Weak 0.5, strong 1.0: PGR 0.5 at 20% strong calls, 0.9 at 60%. */
    const double x[] = {0.6, 0.2}, q[] = {0.95, 0.75};
    ASSERT_NEAR(dynrag_eval_apgr(x, q, 2, 0.5, 1.0), 0.5 * 0.4 + 0.9 * 0.4, 1e-12);
    ASSERT_NEAR(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.5), 0.2, 1e-12);
    ASSERT_NEAR(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.8), 0.6, 1e-12);
    ASSERT(isnan(dynrag_eval_cpt(x, q, 2, 0.5, 1.0, 0.95)));
    /* A worse point later does not lower the running best. */
    const double x2[] = {0.2, 0.5}, q2[] = {0.75, 0.6};
    ASSERT_NEAR(dynrag_eval_apgr(x2, q2, 2, 0.5, 1.0), 0.5 * 0.8, 1e-12);
    /* Below the weak model everywhere: the weak model alone (PGR 0). */
    const double q3[] = {0.4, 0.3};
    ASSERT_NEAR(dynrag_eval_apgr(x2, q3, 2, 0.5, 1.0), 0, 0);
    /* Degenerate pairs. */
    ASSERT(isnan(dynrag_eval_apgr(x, q, 2, 0.7, 0.7)));
    ASSERT(isnan(dynrag_eval_cpt(x, q, 2, 0.8, 0.7, 0.5)));
    ASSERT(isnan(dynrag_eval_apgr(x, q, 0, 0.5, 1.0)));
    /* The random router (quality linear in the strong share) recovers about
     * half the gap; always-strong alone recovers nothing below 100%. */
    double xr[101], qr[101];
    for (int k = 0; k <= 100; k++) {
        xr[k] = k / 100.0;
        qr[k] = 0.3 + 0.4 * xr[k];
    }
    ASSERT_NEAR(dynrag_eval_apgr(xr, qr, 101, 0.3, 0.7), 0.5, 0.006);
    ASSERT_NEAR(dynrag_eval_cpt(xr, qr, 101, 0.3, 0.7, 0.5), 0.5, 1e-9);
    const double xs[] = {1}, qs[] = {0.7};
    ASSERT_NEAR(dynrag_eval_apgr(xs, qs, 1, 0.3, 0.7), 0, 0);
    /* Properties: APGR grows with quality at every point and stays within
     * [0, max PGR]; CPT(50%) <= CPT(80%) when both exist. */
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + (size_t)dr_rng_below(&rng, 20);
        double xx[20], qq[20], qb[20], maxp = 0;
        for (size_t i = 0; i < n; i++) {
            xx[i] = dr_rng_uniform(&rng);
            qq[i] = dr_rng_uniform(&rng);
            qb[i] = qq[i] + dr_rng_uniform(&rng) * 0.1;
            maxp = fmax(maxp, (qq[i] - 0.2) / 0.6);
        }
        double a = dynrag_eval_apgr(xx, qq, n, 0.2, 0.8);
        ASSERT(a >= 0 && a <= maxp + 1e-12);
        ASSERT(dynrag_eval_apgr(xx, qb, n, 0.2, 0.8) >= a - 1e-12);
        double c5 = dynrag_eval_cpt(xx, qq, n, 0.2, 0.8, 0.5);
        double c8 = dynrag_eval_cpt(xx, qq, n, 0.2, 0.8, 0.8);
        if (!isnan(c8))
            ASSERT(!isnan(c5) && c5 <= c8);
    }
}
