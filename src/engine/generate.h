/*
 * engine/generate.h - prompt rendering, generators, judges and cascades
 * (internal to the engine).
 */
#ifndef DYNRAG_ENGINE_GENERATE_H
#define DYNRAG_ENGINE_GENERATE_H

#include "engine/query.h"

/*
 * Generation with its cascades: builds the context (when `retrieved`),
 * routes and renders the prompt, routes and runs the generator (falling back
 * to the stage's fallback option on an error), and while a cascade router on
 * the generator or context stage judges the answer below its threshold and
 * the budget allows, escalates to the next option. Leaves the answer and its
 * citations in s. Fails with the first error that no fallback absorbed.
 */
int dr_q_generate(qstate *s, bool retrieved, dynrag_error *err);

#endif
