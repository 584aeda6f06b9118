/* null — a sink that discards every record (counting them). */
#include "sluice.h"

static int process(void *ctx, sl_batch *in, sl_emitter *em) { return 0; }

const sl_stage_kind sl_stage_null = {
    .abi = SL_STAGE_ABI,
    .name = "null",
    .doc = "discards every record (they are counted)",
    .flags = SL_STAGE_SINK | SL_STAGE_STATELESS | SL_STAGE_UNORDERED,
    .process = process,
};
