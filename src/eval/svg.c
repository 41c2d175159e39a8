/*
 * svg.c - hand-written SVG plots of a comparison: cost against quality (with
 * the threshold sweep as a line) and the option mix as stacked bars. Axes
 * start at zero and tick at 1-2-5 steps (dr_axis_nice); point labels are
 * placed so that no two overlap (coinciding points stack their labels, with
 * a leader line).
 */
#include "dynrag/eval.h"
#include "eval/eval_internal.h"

#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 720
#define H 440
#define ML 70
#define MR 170
#define MT 40
#define MB 60

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

/* Appends s with XML special characters escaped. */
static void put_xml(dr_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': dr_buf_puts(b, "&lt;"); break;
        case '>': dr_buf_puts(b, "&gt;"); break;
        case '&': dr_buf_puts(b, "&amp;"); break;
        case '"': dr_buf_puts(b, "&quot;"); break;
        default: dr_buf_putc(b, *s);
        }
    }
}

static const char *row_color(const char *name)
{
    if (strcmp(name, "router") == 0)
        return "#d62728";
    if (strcmp(name, "oracle") == 0)
        return "#2ca02c";
    if (strcmp(name, "random") == 0)
        return "#7f7f7f";
    if (strcmp(name, "random-mix") == 0)
        return "#ff7f0e";
    return "#1f77b4";
}

void dr_axis_nice(double dlo, double dhi, dr_axis *out)
{
    if (!isfinite(dlo) || !isfinite(dhi) || dlo > dhi) {
        dlo = 0;
        dhi = 1;
    }
    double lo = fmin(0, dlo), hi = fmax(0, dhi);
    if (hi - lo <= 0 || hi - lo < 1e-300)
        hi = lo + 1;
    /* The smallest 1-2-5 step with at most MAX_TICKS - 1 intervals. */
    double span = hi - lo;
    double raw = span / (DR_AXIS_MAX_TICKS - 1);
    int k = (int)floor(log10(raw));
    static const double mant[] = {1, 2, 5, 10};
    double step = 0;
    int decimals = 0;
    double alo = 0, ahi = 0;
    for (int tries = 0; tries < 8 && step == 0; tries++, k++) {
        for (size_t m = 0; m < DR_ARRAY_LEN(mant); m++) {
            double st = mant[m] * pow(10, k);
            double a = floor(lo / st + 1e-9) * st, b = ceil(hi / st - 1e-9) * st;
            double n = floor((b - a) / st + 0.5) + 1;
            if (n <= DR_AXIS_MAX_TICKS) {
                step = st;
                alo = a;
                ahi = b;
                /* 10 x 10^k is 1 x 10^(k+1) */
                int e = m == 3 ? k + 1 : k;
                decimals = e < 0 ? -e : 0;
                break;
            }
        }
    }
    if (step == 0) { /* unreachable for finite spans; keep a usable axis */
        step = span;
        alo = lo;
        ahi = hi;
    }
    if (alo == 0)
        alo = 0; /* no "-0" label */
    out->lo = alo;
    out->hi = ahi;
    out->step = step;
    out->n = (int)floor((ahi - alo) / step + 0.5) + 1;
    out->decimals = decimals > 15 ? 15 : decimals;
}

/* A placed label's box (pixels). */
typedef struct box {
    double x0, y0, x1, y1;
} box;

static bool overlaps(const box *a, const box *b)
{
    return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/*
 * Places a label of `len` bytes for the point (px, py): the first free spot
 * right of the point, then left of it, at vertical offsets 0, +1, -1, +2,
 * ... label heights, that overlaps no placed box nor any point marker, and
 * (while the search is near) stays inside the plot area [ax0, ax1] x [ay0,
 * ay1]. Returns the box; *anchor_left tells whether it sits left of the point.
 */
static box place_label(double px, double py, size_t len, const box *placed, size_t n_placed,
                       const double *pts, size_t n_pts, double ax0, double ay0, double ax1,
                       double ay1)
{
    double w = DR_SVG_CHAR_W * (double)len, h = DR_SVG_LABEL_H;
    box b = {px + 7, py - h / 2, px + 7 + w, py + h / 2};
    for (int relax = 0; relax < 2; relax++)
        for (int step = 0; step < 80; step++) {
            int off = (step + 1) / 2 * (step % 2 ? 1 : -1);
            for (int side = 0; side < 2; side++) {
                double x0 = side == 0 ? px + 7 : px - 7 - w;
                double y0 = py - h / 2 + off * (h + 1);
                box c = {x0, y0, x0 + w, y0 + h};
                if (!relax && (c.x0 < ax0 || c.x1 > ax1 || c.y0 < ay0 || c.y1 > ay1))
                    continue;
                bool free_spot = true;
                for (size_t i = 0; i < n_placed && free_spot; i++)
                    free_spot = !overlaps(&c, &placed[i]);
                for (size_t i = 0; i < n_pts && free_spot; i++) {
                    box m = {pts[2 * i] - 4, pts[2 * i + 1] - 4, pts[2 * i] + 4,
                             pts[2 * i + 1] + 4};
                    free_spot = !overlaps(&c, &m);
                }
                if (free_spot)
                    return c;
            }
        }
    return b; /* not reached with the plots' few labels */
}

char *dynrag_eval_svg_scatter(const dynrag_eval_table *t, const dynrag_eval_comparison *c,
                              const char *quality_name, const char *cost_name)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t pass = 0; pass < 2; pass++) {
        const dynrag_eval_row *rows = pass ? c->sweep : c->rows;
        size_t n = pass ? c->n_sweep : c->n_rows;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(rows[i].cost) || !isfinite(rows[i].quality))
                continue;
            xlo = fmin(xlo, rows[i].cost);
            xhi = fmax(xhi, rows[i].cost);
            ylo = fmin(ylo, rows[i].quality);
            yhi = fmax(yhi, rows[i].quality);
        }
    }
    dr_axis ax, ay;
    dr_axis_nice(xlo, xhi, &ax);
    dr_axis_nice(ylo, yhi, &ay);
    double pw = W - ML - MR, ph = H - MT - MB;
#define PX(v) (ML + ((v) - ax.lo) / (ax.hi - ax.lo) * pw)
#define PY(v) (MT + ph - ((v) - ay.lo) / (ay.hi - ay.lo) * ph)
    dr_buf b = {0};
    dr_buf_printf(&b,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                  W, H, W, H);
    dr_buf_puts(&b, "<text x=\"10\" y=\"22\" font-size=\"15\">stage ");
    put_xml(&b, t->stage);
    dr_buf_puts(&b, " (");
    put_xml(&b, t->router_type);
    dr_buf_printf(&b, " router): %s against %s, %zu queries</text>\n", quality_name, cost_name,
                  t->n_queries);
    /* Axes, grid and ticks: 1-2-5 steps, from zero. */
    dr_buf_printf(&b,
                  "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                  "stroke=\"#333\"/>\n",
                  ML, MT, pw, ph);
    for (int i = 0; i < ax.n; i++) {
        double xv = ax.lo + ax.step * i;
        dr_buf_printf(&b,
                      "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#eee\"/>"
                      "<text class=\"xtick\" x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.*f"
                      "</text>\n",
                      PX(xv), MT, PX(xv), MT + ph, PX(xv), MT + ph + 16, ax.decimals, xv);
    }
    for (int i = 0; i < ay.n; i++) {
        double yv = ay.lo + ay.step * i;
        dr_buf_printf(&b,
                      "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                      "<text class=\"ytick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n",
                      ML, PY(yv), ML + pw, PY(yv), ML - 6, PY(yv) + 4, ay.decimals, yv);
    }
    dr_buf_printf(&b, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">", ML + pw / 2, H - 18);
    put_xml(&b, cost_name);
    dr_buf_printf(&b, " (mean per query)</text>\n<text transform=\"translate(18,%.0f) rotate(-90)\" "
                      "text-anchor=\"middle\">",
                  MT + ph / 2);
    put_xml(&b, quality_name);
    dr_buf_puts(&b, " (mean)</text>\n");
    /* The sweep. */
    if (c->n_sweep > 0) {
        dr_buf_puts(&b, "<polyline fill=\"none\" stroke=\"#9467bd\" stroke-width=\"1.5\" points=\"");
        for (size_t i = 0; i < c->n_sweep; i++)
            if (isfinite(c->sweep[i].cost) && isfinite(c->sweep[i].quality))
                dr_buf_printf(&b, "%.1f,%.1f ", PX(c->sweep[i].cost), PY(c->sweep[i].quality));
        dr_buf_puts(&b, "\"/>\n");
        for (size_t i = 0; i < c->n_sweep; i++)
            if (isfinite(c->sweep[i].cost) && isfinite(c->sweep[i].quality))
                dr_buf_printf(&b,
                              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#9467bd\">"
                              "<title>threshold %.3g: quality %.4f, cost %.4g</title></circle>\n",
                              PX(c->sweep[i].cost), PY(c->sweep[i].quality), c->sweep[i].param,
                              c->sweep[i].quality, c->sweep[i].cost);
    }
    /* The single options' hull (its points are always-X rows, inside the axes). */
    if (c->n_hull > 0) {
        dr_buf_puts(&b, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-dasharray=\"5,4\" "
                        "points=\"");
        for (size_t i = 0; i < c->n_hull; i++)
            dr_buf_printf(&b, "%.1f,%.1f ", PX(c->hull[i].cost), PY(c->hull[i].quality));
        dr_buf_puts(&b, "\"><title>hull of the single options</title></polyline>\n");
    }
    /* The rows' points (best-single repeats an always-X point), then their
     * labels, each placed clear of every other label and point (a leader
     * line joins a label moved away). */
    double *pts = dr_calloc(2 * (c->n_rows + 1), sizeof *pts);
    box *placed = dr_calloc(c->n_rows + 1, sizeof *placed);
    size_t n_pts = 0, n_placed = 0;
    for (size_t i = 0; i < c->n_rows && pts != NULL; i++) {
        const dynrag_eval_row *r = &c->rows[i];
        if (!isfinite(r->cost) || !isfinite(r->quality) || strcmp(r->name, "best-single") == 0)
            continue;
        double x = PX(r->cost), y = PY(r->quality);
        pts[2 * n_pts] = x;
        pts[2 * n_pts + 1] = y;
        n_pts++;
        dr_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"><title>", x, y,
                      strcmp(r->name, "router") == 0 ? 6 : 4, row_color(r->name));
        put_xml(&b, r->name);
        dr_buf_printf(&b, ": quality %.4f, cost %.4g</title></circle>\n", r->quality, r->cost);
    }
    for (size_t i = 0, k = 0; i < c->n_rows && pts != NULL && placed != NULL; i++) {
        const dynrag_eval_row *r = &c->rows[i];
        if (!isfinite(r->cost) || !isfinite(r->quality) || strcmp(r->name, "best-single") == 0)
            continue;
        double x = pts[2 * k], y = pts[2 * k + 1];
        k++;
        box lb = place_label(x, y, strlen(r->name), placed, n_placed, pts, n_pts, ML, MT,
                             ML + pw, MT + ph);
        placed[n_placed++] = lb;
        double ly = (lb.y0 + lb.y1) / 2;
        if (fabs(ly - y) > 1)
            dr_buf_printf(&b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                          "stroke-width=\"0.7\"/>\n",
                          x, y, lb.x0 > x ? lb.x0 : lb.x1, ly);
        dr_buf_printf(&b, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\">", lb.x0, lb.y1 - 3);
        put_xml(&b, r->name);
        dr_buf_puts(&b, "</text>\n");
    }
    dr_free(pts);
    dr_free(placed);
    /* Legend. */
    static const char *const legend[] = {"router", "always-X", "random", "random-mix", "oracle"};
    for (size_t i = 0; i < DR_ARRAY_LEN(legend); i++) {
        double y = MT + 14 + 18.0 * (double)i;
        dr_buf_printf(&b,
                      "<circle cx=\"%d\" cy=\"%.0f\" r=\"5\" fill=\"%s\"/><text x=\"%d\" "
                      "y=\"%.0f\">%s</text>\n",
                      W - MR + 20, y, row_color(legend[i]), W - MR + 30, y + 4, legend[i]);
    }
    if (c->n_sweep > 0)
        dr_buf_printf(&b,
                      "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#9467bd\" "
                      "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">threshold sweep</text>\n",
                      W - MR + 14, MT + 14 + 18 * 5, W - MR + 26, MT + 14 + 18 * 5, W - MR + 30,
                      MT + 18 + 18 * 5);
    dr_buf_puts(&b, "</svg>\n");
#undef PX
#undef PY
    return dr_buf_take(&b);
}

char *dynrag_eval_svg_mix(const dynrag_eval_table *t, const dynrag_eval_comparison *c)
{
    static const char *const which[] = {"router", "random-mix", "random", "oracle"};
    int bar_h = 28, gap = 16, top = 50, left = 110, width = 440;
    int height = top + (int)DR_ARRAY_LEN(which) * (bar_h + gap) + 30 + 18 * (int)t->n_options;
    dr_buf b = {0};
    dr_buf_printf(&b,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"10\" y=\"24\" font-size=\"15\">stage ",
                  left + width + 40, height, left + width + 40, height);
    put_xml(&b, t->stage);
    dr_buf_printf(&b, ": option mix (share of %zu queries)</text>\n", t->n_queries);
    int y = top;
    for (size_t w = 0; w < DR_ARRAY_LEN(which); w++) {
        const dynrag_eval_row *r = dynrag_eval_comparison_row(c, which[w]);
        if (r == NULL)
            continue;
        dr_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8,
                      y + bar_h / 2 + 4, which[w]);
        double x = left;
        for (size_t o = 0; o < t->n_options && o < 16; o++) {
            double wd = r->share[o] * width;
            if (wd <= 0)
                continue;
            dr_buf_printf(&b,
                          "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                          "<title>",
                          x, y, wd, bar_h, palette[o % DR_ARRAY_LEN(palette)]);
            put_xml(&b, t->options[o]);
            dr_buf_printf(&b, ": %.1f%%</title></rect>\n", 100 * r->share[o]);
            if (wd > 34)
                dr_buf_printf(&b,
                              "<text x=\"%.1f\" y=\"%d\" fill=\"white\" text-anchor=\"middle\">"
                              "%.0f%%</text>\n",
                              x + wd / 2, y + bar_h / 2 + 4, 100 * r->share[o]);
            x += wd;
        }
        y += bar_h + gap;
    }
    for (size_t o = 0; o < t->n_options; o++) {
        dr_buf_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%d\" y=\"%d\">",
                      left, y + 18 * (int)o, palette[o % DR_ARRAY_LEN(palette)], left + 18,
                      y + 18 * (int)o + 10);
        put_xml(&b, t->options[o]);
        dr_buf_puts(&b, "</text>\n");
    }
    dr_buf_puts(&b, "</svg>\n");
    return dr_buf_take(&b);
}

char *dynrag_eval_svg_calls(const dynrag_eval_table *t, const dynrag_eval_comparison *c)
{
    static const char *const which[] = {"router", "best-single", "random-mix", "oracle"};
    int bar_h = 11, group_gap = 18, top = 50, left = 120, width = 420;
    /* Room for the longest option name (about 7 px a character at 12 px). */
    for (size_t o = 0; o < t->n_options && o < 16; o++) {
        size_t len = strlen(t->options[o]);
        if (len > 200)
            len = 200;
        if (20 + 7 * (int)len > left)
            left = 20 + 7 * (int)len;
    }
    size_t max_calls = 1;
    for (size_t w = 0; w < DR_ARRAY_LEN(which); w++) {
        const dynrag_eval_row *r = dynrag_eval_comparison_row(c, which[w]);
        for (size_t o = 0; r && o < t->n_options && o < 16; o++)
            max_calls = r->calls[o] > max_calls ? r->calls[o] : max_calls;
    }
    size_t n = t->n_options < 16 ? t->n_options : 16;
    int height = top + (int)n * ((int)DR_ARRAY_LEN(which) * bar_h + group_gap) + 40;
    dr_buf b = {0};
    dr_buf_printf(&b,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"10\" y=\"24\" font-size=\"15\">stage ",
                  left + width + 80, height, left + width + 80, height);
    put_xml(&b, t->stage);
    dr_buf_printf(&b, ": calls per option (%zu queries; cascades count every call)</text>\n",
                  t->n_queries);
    for (size_t w = 0; w < DR_ARRAY_LEN(which); w++)
        dr_buf_printf(&b,
                      "<rect x=\"%d\" y=\"32\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                      "<text x=\"%d\" y=\"41\">%s</text>\n",
                      left + (int)w * 105, palette[w], left + (int)w * 105 + 14, which[w]);
    int y = top;
    for (size_t o = 0; o < n; o++) {
        dr_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 8,
                      y + (int)DR_ARRAY_LEN(which) * bar_h / 2 + 4);
        put_xml(&b, t->options[o]);
        dr_buf_puts(&b, "</text>\n");
        for (size_t w = 0; w < DR_ARRAY_LEN(which); w++) {
            const dynrag_eval_row *r = dynrag_eval_comparison_row(c, which[w]);
            if (r != NULL) {
                double wd = (double)r->calls[o] / (double)max_calls * width;
                dr_buf_printf(&b,
                              "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                              "fill=\"%s\"><title>%s: %zu</title></rect>"
                              "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">%zu</text>\n",
                              left, y, wd, bar_h - 1, palette[w], which[w], r->calls[o],
                              left + wd + 4, y + bar_h - 2, r->calls[o]);
            }
            y += bar_h;
        }
        y += group_gap;
    }
    dr_buf_puts(&b, "</svg>\n");
    return dr_buf_take(&b);
}
