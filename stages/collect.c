/* collect — a sink whose records the embedding program pulls (sl_collect_pull). Its input queue
 * is unbounded unless `queue: {capacity: N}` is given, so a pipeline run to the end keeps all. */
#include "sluice.h"

static int process(void *ctx, sl_batch *in, sl_emitter *em) { return 0; }

const sl_stage_kind sl_stage_collect = {
    .abi = SL_STAGE_ABI,
    .name = "collect",
    .doc = "keeps records for the embedding program to pull (sl_collect_pull)",
    .flags = SL_STAGE_SINK | SL_STAGE_PASSIVE,
    .process = process,
};
