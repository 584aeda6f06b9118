/* registry.c — the table of built-in stage kinds, expanded from stage_list.h. */
#include "pipeline.h"

#define X(name) extern const sl_stage_kind sl_stage_##name;
#include "stage_list.h"
#undef X

const sl_stage_kind *const sl__builtin_kinds[] = {
#define X(name) &sl_stage_##name,
#include "stage_list.h"
#undef X
};

const size_t sl__builtin_kind_count = sizeof sl__builtin_kinds / sizeof sl__builtin_kinds[0];
