/* port — a source fed by the embedding program (sl_port_push); the engine drives it directly. */
#include "sluice.h"

static int produce(void *ctx, sl_emitter *em) { return SL_PARKED; }

const sl_stage_kind sl_stage_port = {
    .abi = SL_STAGE_ABI,
    .name = "port",
    .doc = "records pushed by the embedding program (sl_port_push), until sl_port_close",
    .flags = SL_STAGE_SOURCE | SL_STAGE_PASSIVE,
    .produce = produce,
};
