/*
 * settings.c — pipeline-wide settings by name (sl_pipeline_set), checked against one options
 * table like a stage's, so the YAML front end, the Lua front end and the docs share it.
 */
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "pipeline.h"

/* Scratch context the table parses into; the parsed fields go to the pipeline. */
typedef struct settings {
  int on_error;             /* enum index */
  char *dead_letter;        /* stage name */
  int64_t drain_timeout;    /* ns */
  bool sandbox;
  sl_value sandbox_paths;   /* array of strings */
  int64_t lua_memory_limit; /* bytes */
  int64_t lua_instruction_limit;
  int64_t memory_limit;     /* bytes */
} settings;

static const sl_option settings_options[] = {
    {SL_OPT_ENUM, "on_error", NULL, offsetof(settings, on_error), "what a failed record does by default", "skip|fail|dead_letter", 0},
    {SL_OPT_STRING, "dead_letter", NULL, offsetof(settings, dead_letter), "the stage that receives failed records", NULL, 0},
    {SL_OPT_DURATION, "drain_timeout", NULL, offsetof(settings, drain_timeout), "how long a drain may take before it aborts", NULL, 0},
    {SL_OPT_BOOL, "sandbox", NULL, offsetof(settings, sandbox), "restrict what Lua code may do", NULL, 0},
    {SL_OPT_VALUE, "sandbox_paths", NULL, offsetof(settings, sandbox_paths), "directories sandboxed Lua may open files under", NULL, 0},
    {SL_OPT_SIZE, "lua_memory_limit", NULL, offsetof(settings, lua_memory_limit), "bytes one Lua state may hold", NULL, 0},
    {SL_OPT_INT, "lua_instruction_limit", NULL, offsetof(settings, lua_instruction_limit), "instructions one Lua call may run", NULL, 0},
    {SL_OPT_SIZE, "memory_limit", NULL, offsetof(settings, memory_limit), "bytes of records held in queues; sources pause when it is reached (0: no limit)", NULL, 0},
    SL_OPTIONS_END,
};

const char *sl_pipeline_name(const sl_pipeline *p) { return p->name; }

const sl_value *sl_pipeline_setting(const sl_pipeline *p, const char *key) {
  return p->settings.type == SL_TMAP ? sl_map_getc(&p->settings, key) : NULL;
}

int sl_pipeline_set(sl_pipeline *p, const char *key, sl_value v, const char *where, sl_error_t *err) {
  int rc = 0;
  settings s = {0};
  sl_value one = sl_map(1);
  if (!where) where = "";
  if (p->state != SL_P_BUILDING) {
    rc = sl_error_set(err, SL_ESTATE, NULL, "%spipeline '%s' already started: settings are made before start", where, p->name);
    goto done;
  }
  size_t i = 0;
  while (settings_options[i].type != SL_OPT_END && strcmp(settings_options[i].key, key) != 0) i++;
  if (settings_options[i].type == SL_OPT_END) {
    const char *names[16];
    size_t n = 0;
    for (; settings_options[n].type != SL_OPT_END; n++) names[n] = settings_options[n].key;
    const char *dym = sl_did_you_mean(key, names, n);
    rc = sl_error_set(err, SL_ECONFIG, NULL, "%sunknown pipeline setting '%s'%s%s%s", where, key, dym ? "; did you mean '" : "",
                      dym ? dym : "", dym ? "'?" : "");
    goto done;
  }
  sl_map_setc(&one, key, sl_value_ref(&v));
  rc = sl__options_apply(settings_options, &s, &one, NULL, where, "pipeline", "pipeline", err);
  if (rc) {
    /* the table's message says "stage 'pipeline'": say "setting" instead */
    if (err) {
      sl_error_t e2;
      sl_error_init(&e2);
      const char *m = strstr(err->msg, "option '");
      sl_error_set(&e2, SL_ECONFIG, NULL, "%ssetting %s", where, m ? m + 7 : err->msg);
      *err = e2;
    }
    goto done;
  }
  if (strcmp(key, "sandbox_paths") == 0) {
    bool ok = s.sandbox_paths.type == SL_TARRAY;
    for (size_t j = 0; ok && j < sl_array_len(&s.sandbox_paths); j++)
      ok = sl_typeof(sl_array_get(&s.sandbox_paths, j)) == SL_TSTR;
    if (!ok) {
      rc = sl_error_set(err, SL_ECONFIG, NULL, "%ssetting 'sandbox_paths' expects a list of directory names", where);
      goto done;
    }
  } else if (strcmp(key, "memory_limit") == 0) {
    if (s.memory_limit < 0) {
      rc = sl_error_set(err, SL_ECONFIG, NULL, "%ssetting 'memory_limit' must not be negative (0: no limit)", where);
      goto done;
    }
    p->mem_limit = (uint64_t)s.memory_limit;
  } else if (strcmp(key, "on_error") == 0) {
    rc = sl_pipeline_set_on_error(p, sl_str_data(&v), err);
    if (rc) goto done;
  } else if (strcmp(key, "dead_letter") == 0) {
    rc = sl_pipeline_set_dead_letter(p, s.dead_letter, err);
    if (rc) goto done;
  } else if ((strcmp(key, "lua_memory_limit") == 0 && s.lua_memory_limit < 0) ||
             (strcmp(key, "lua_instruction_limit") == 0 && s.lua_instruction_limit < 0)) {
    rc = sl_error_set(err, SL_ECONFIG, NULL, "%ssetting '%s' must not be negative (0: no limit)", where, key);
    goto done;
  }
  if (p->settings.type != SL_TMAP) p->settings = sl_map(4);
  sl_map_setc(&p->settings, key, sl_value_ref(&v));
done:
  sl__options_free(settings_options, &s);
  sl_value_free(one);
  sl_value_free(v);
  return rc;
}
