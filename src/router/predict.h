/*
 * router/predict.h - scoring a stage's options with a model trained on
 * outcome tables (router/omodel.h), shared by the `predict` family of
 * routers and the cascade's cascade routing (internal).
 */
#ifndef DYNRAG_ROUTER_PREDICT_H
#define DYNRAG_ROUTER_PREDICT_H

#include "pipeline/spec.h"
#include "router/omodel.h"

/* model_index[i] = the model option named like the stage's option i, or
 * -1; returns how many stage options the model knows. */
size_t dr_predict_map_options(const dr_omodel *m, const dr_stage *st, int *model_index);

/*
 * The model's predictions for query: qc (2 * DR_OUTCOMES_MAX_OPTIONS) gets
 * its raw per-model-option quality then cost; for each stage option i,
 * q[i] the predicted quality, c[i] the cost (the model's cost line, or
 * when the model has none for that option the price: price[i].usd, NULL:
 * the option's declared price for the query's length, router/cost.h) and
 * score[i] = q[i] - wtp * c[i]. Options the model does not know get NAN.
 */
int dr_predict_scores(const dr_omodel *m, const int *model_index, const dr_stage *st,
                      const char *query, const dr_budget *price, double wtp, double *qc,
                      double *q, double *c, double *score, dynrag_error *err);

#endif
