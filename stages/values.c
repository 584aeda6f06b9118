/* values — a source of the records given in its options, in order (tests, examples, and the
 * records `tests:` injects into a pipeline). */
#include <stddef.h>

#include "sluice.h"

typedef struct values {
  sl_value records; /* option: an array, owned by the engine */
  size_t next;      /* index of the next record to emit */
} values;

static const sl_option options[] = {
    {SL_OPT_VALUE, "records", NULL, offsetof(values, records), "the records to emit, in order (a list)", NULL,
     SL_OPT_PRIMARY | SL_OPT_REQUIRED},
    SL_OPTIONS_END,
};

static int init(void *ctx, sl_stage *st, sl_error_t *err) {
  values *v = ctx;
  if (sl_typeof(&v->records) != SL_TARRAY)
    return sl_error_set(err, SL_ECONFIG, NULL, "records must be a list (got %s)", sl_type_name(sl_typeof(&v->records)));
  return 0;
}

static int produce(void *ctx, sl_emitter *em) {
  values *v = ctx;
  size_t n = sl_array_len(&v->records);
  uint32_t room = sl_emitter_room(em);
  for (uint32_t i = 0; i < room && v->next < n; i++) /* references: the option keeps its records */
    if (sl_emit(em, SL_NO_ORIGIN, sl_value_ref(sl_array_get(&v->records, v->next++))) != 0) return SL_ENOMEM;
  return v->next >= n ? SL_DONE : 0;
}

const sl_stage_kind sl_stage_values = {
    .abi = SL_STAGE_ABI,
    .name = "values",
    .doc = "emits the records of its list, in order, then ends",
    .options = options,
    .ctx_size = sizeof(values),
    .flags = SL_STAGE_SOURCE,
    .init = init,
    .produce = produce,
};
