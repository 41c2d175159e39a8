/*
 * test_svg.c - the evaluation plots: 1-2-5 ticks from zero over many
 * generated ranges (a property of dr_axis_nice), and point labels that never
 * overlap, also when points coincide.
 */
#include "test.h"

#include "core/util.h"
#include "dynrag/eval.h"
#include "eval/eval_internal.h"

/* Whether v is m x 10^k with m in {1, 2, 5}. */
static bool is_125(double v)
{
    if (!(v > 0) || !isfinite(v))
        return false;
    double e = floor(log10(v));
    double m = v / pow(10, e);
    for (int k = -1; k <= 1; k++) { /* log10 rounding at decade edges */
        double mm = m * pow(10, k);
        if (fabs(mm - 1) < 1e-9 || fabs(mm - 2) < 1e-9 || fabs(mm - 5) < 1e-9)
            return true;
    }
    return false;
}

static double random_value(dr_rng *rng)
{
    int e = (int)dr_rng_below(rng, 17) - 8;
    double v = dr_rng_uniform(rng) * pow(10, e);
    switch (dr_rng_below(rng, 6)) {
    case 0: return 0;
    case 1: return -v;
    case 2: return round(v * 100) / 100; /* round values hit tick edges */
    default: return v;
    }
}

/*
 * Invariant over 20,000 generated data ranges: the axis covers the data and
 * zero, its step is 1, 2 or 5 times a power of ten, its ends and zero are
 * ticks, it has 2..11 ticks, no smaller 1-2-5 step would do, and the tick
 * labels (printed with the axis's decimals) are exact and distinct.
 */
TEST(svg_axis_nice_ticks_property)
{
    dr_rng rng;
    dr_rng_seed(&rng, 125);
    for (int it = 0; it < 20000; it++) {
        double a = random_value(&rng), b = dr_rng_below(&rng, 8) == 0 ? a : random_value(&rng);
        double dlo = fmin(a, b), dhi = fmax(a, b);
        dr_axis ax;
        dr_axis_nice(dlo, dhi, &ax);
        double lo = fmin(0, dlo), hi = fmax(0, dhi), tol = 1e-9 * ax.step;
        char what[160];
        snprintf(what, sizeof what, "data [%.17g, %.17g] -> [%.17g, %.17g] step %.17g n %d", dlo,
                 dhi, ax.lo, ax.hi, ax.step, ax.n);
        if (!is_125(ax.step))
            test_fail_(__FILE__, __LINE__, "step not 1-2-5: %s", what);
        if (!(ax.lo <= lo + tol && ax.hi >= hi - tol))
            test_fail_(__FILE__, __LINE__, "does not cover data and zero: %s", what);
        if (ax.n < 2 || ax.n > DR_AXIS_MAX_TICKS)
            test_fail_(__FILE__, __LINE__, "tick count: %s", what);
        if (fabs(ax.lo + (ax.n - 1) * ax.step - ax.hi) > tol)
            test_fail_(__FILE__, __LINE__, "n does not match: %s", what);
        double z = -ax.lo / ax.step;
        if (fabs(z - round(z)) > 1e-6 || fabs(ax.lo / ax.step - round(ax.lo / ax.step)) > 1e-6)
            test_fail_(__FILE__, __LINE__, "zero or lo not a tick: %s", what);
        /* minimal: the next smaller 1-2-5 step needs more than MAX ticks */
        double e = pow(10, floor(log10(ax.step) + 1e-9));
        double m = ax.step / e;
        double smaller = fabs(m - 1) < 1e-9 ? 0.5 * e : fabs(m - 2) < 1e-9 ? e : 2 * e;
        double n_small = ceil(hi / smaller - 1e-9) - floor(lo / smaller + 1e-9) + 1;
        if (hi - lo > 0 && n_small <= DR_AXIS_MAX_TICKS)
            test_fail_(__FILE__, __LINE__, "step %.17g not minimal (%.17g gives %g ticks): %s",
                       ax.step, smaller, n_small, what);
        char prev[64] = "";
        for (int i = 0; i < ax.n; i++) {
            double v = ax.lo + ax.step * i;
            char lab[64];
            snprintf(lab, sizeof lab, "%.*f", ax.decimals, v);
            if (fabs(strtod(lab, NULL) - v) > tol || strcmp(lab, prev) == 0 ||
                strcmp(lab, "-0") == 0)
                test_fail_(__FILE__, __LINE__, "label %s for tick %.17g: %s", lab, v, what);
            snprintf(prev, sizeof prev, "%s", lab);
        }
    }
    dr_axis ax;
    dr_axis_nice(NAN, 1, &ax);
    ASSERT_NEAR(ax.lo, 0, 0);
    ASSERT_NEAR(ax.hi, 1, 1e-12);
    dr_axis_nice(0, 0, &ax);
    ASSERT_NEAR(ax.lo, 0, 0);
    ASSERT_NEAR(ax.hi, 1, 1e-12);
    dr_axis_nice(-0.239, 0.453, &ax); /* the odd ticks */
    ASSERT_NEAR(ax.step, 0.1, 1e-12);
    ASSERT_NEAR(ax.lo, -0.3, 1e-12);
    ASSERT_NEAR(ax.hi, 0.5, 1e-12);
}

typedef struct lbox {
    double x0, y0, x1, y1;
} lbox;

/*
 * Invariant over generated comparisons (up to 20 rows, many of them at the
 * same point): no two point labels overlap, every row has its label, and
 * the axes start at zero for non-negative data.
 */
TEST(svg_labels_never_overlap)
{
    dr_rng rng;
    dr_rng_seed(&rng, 9);
    dynrag_eval_table t;
    memset(&t, 0, sizeof t);
    t.stage = "generator";
    t.router_type = "cascade";
    t.n_queries = 10;
    for (int it = 0; it < 300; it++) {
        dynrag_eval_comparison c;
        memset(&c, 0, sizeof c);
        dynrag_eval_row rows[20];
        memset(rows, 0, sizeof rows);
        c.rows = rows;
        c.n_rows = 3 + (size_t)dr_rng_below(&rng, 18);
        int distinct = 1 + (int)dr_rng_below(&rng, 4);
        double px[4], py[4];
        for (int d = 0; d < distinct; d++) {
            px[d] = dr_rng_uniform(&rng) * 0.01;
            py[d] = dr_rng_uniform(&rng);
        }
        for (size_t i = 0; i < c.n_rows; i++) {
            int d = (int)dr_rng_below(&rng, (uint64_t)distinct);
            snprintf(rows[i].name, sizeof rows[i].name,
                     i == 0   ? "router"
                     : i == 1 ? "oracle"
                              : "always-option-%zu",
                     i);
            rows[i].cost = px[d];
            rows[i].quality = py[d];
        }
        char *svg = dynrag_eval_svg_scatter(&t, &c, "f1", "usd");
        ASSERT(svg != NULL);
        lbox boxes[20];
        size_t nb = 0;
        for (const char *p = strstr(svg, "class=\"label\""); p;
             p = strstr(p + 1, "class=\"label\"")) {
            double x = 0, y = 0;
            ASSERT_EQ(sscanf(p, "class=\"label\" x=\"%lf\" y=\"%lf\">", &x, &y), 2);
            const char *s = strchr(p, '>') + 1, *e = strchr(s, '<');
            double w = DR_SVG_CHAR_W * (double)(e - s);
            ASSERT(nb < 20);
            boxes[nb++] = (lbox){x, y + 3 - DR_SVG_LABEL_H, x + w, y + 3};
        }
        ASSERT_EQ(nb, c.n_rows);
        for (size_t i = 0; i < nb; i++)
            for (size_t j = i + 1; j < nb; j++)
                if (boxes[i].x0 < boxes[j].x1 && boxes[j].x0 < boxes[i].x1 &&
                    boxes[i].y0 < boxes[j].y1 && boxes[j].y0 < boxes[i].y1)
                    test_fail_(__FILE__, __LINE__, "labels %zu and %zu overlap (%zu rows)", i, j,
                               c.n_rows);
        ASSERT_CONTAINS(svg, "class=\"xtick\" x=\"70.0\" y=\"396\" text-anchor=\"middle\">0");
        ASSERT_CONTAINS(svg, "text-anchor=\"end\">0");
        free(svg);
    }
}
