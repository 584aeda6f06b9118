/*
 * test_yaml.c — the YAML front end through the C API (sl_config_*): scalar typing, every class
 * of configuration error with its exact file:line:col, several errors at once, ${VAR}
 * expansion, --set, pipelines built from YAML and run, the `values` source, and `tests:`.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

/* ---- helpers ---- */

/* Loads text as "t.yaml" with the given --set arguments. */
static int load(const char *text, const char *const *sets, size_t nsets, sl_config **c, sl_error_t *err) {
  sl_load_options o = {sets, nsets};
  sl_error_init(err);
  *c = NULL;
  return sl_config_load_text(text, strlen(text), "t.yaml", &o, c, err);
}

/* Loads and builds text, frees everything; returns the first failing call's code. */
static int build_rc(const char *text, sl_error_t *err) {
  sl_config *c = NULL;
  sl_pipeline *p = NULL;
  int rc = load(text, NULL, 0, &c, err);
  if (rc) return rc;
  sl_engine *e = sl_test_engine(1, true);
  rc = sl_config_build(c, e, &p, err);
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  return rc;
}

/* Loads (with sets), builds and runs text on the virtual clock, and pulls the records of the
 * collect stage `name` into *out (an array). */
static int run_collect(const char *text, const char *const *sets, size_t nsets, const char *name, sl_value *out,
                       sl_error_t *err) {
  sl_config *c = NULL;
  sl_pipeline *p = NULL;
  *out = sl_array(0);
  int rc = load(text, sets, nsets, &c, err);
  if (rc) return rc;
  sl_engine *e = sl_test_engine(2, true);
  rc = sl_config_build(c, e, &p, err);
  if (rc == 0) rc = sl_pipeline_run(p, err);
  sl_collect *col = rc == 0 ? sl_pipeline_collect(p, name) : NULL;
  sl_value v;
  while (col && sl_collect_pull(col, &v, -1) == SL_OK) sl_array_push(out, v);
  if (rc == 0 && !col) rc = SL_ENOTFOUND;
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  return rc;
}

/* The JSON text of a value (static buffer: one use per expression). */
static const char *json(const sl_value *v) {
  static char text[4096];
  sl_buf b;
  sl_buf_init(&b);
  sl_value_to_json(v, &b);
  snprintf(text, sizeof text, "%s", b.data ? b.data : "");
  sl_buf_close(&b);
  return text;
}

/* Asserts err->msg contains s. */
#define ASSERT_MSG(err, s)                                                   \
  do {                                                                       \
    if (!strstr((err).msg, (s))) SL__FAIL("message lacks \"%s\":\n%s", (s), (err).msg); \
  } while (0)

/* Counts the lines of a message. */
static int lines_of(const char *msg) {
  int n = *msg ? 1 : 0;
  for (; *msg; msg++) n += *msg == '\n';
  return n;
}

/* ---- the values source ---- */

TEST(yaml_values_stage) {
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = NULL;
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_pipeline_new(e, "v", &p, &err), &err);
  sl_value recs = sl_array(1000);
  for (int i = 0; i < 1000; i++) sl_array_push(&recs, i % 2 ? sl_int(i) : sl_strf("record number %d", i));
  sl_value opts = sl_map(1);
  sl_map_setc(&opts, "records", recs);
  ASSERT_OK(sl_pipeline_add(p, "values", opts, &err), &err);
  /* a small queue: values must respect the emitter's room */
  ASSERT_OK(sl_pipeline_add_json(p, "collect", "{\"name\": \"out\", \"queue\": {\"capacity\": 7}}", &err), &err);
  ASSERT_OK(sl_pipeline_start(p, &err), &err);
  sl_collect *c = sl_pipeline_collect(p, "out");
  sl_value v;
  int n = 0;
  while (sl_collect_pull(c, &v, -1) == SL_OK) {
    if (n % 2) ASSERT(v.type == SL_TINT && v.u.i == n);
    else {
      char want[64];
      snprintf(want, sizeof want, "record number %d", n);
      ASSERT(v.type == SL_TSTR && strcmp(sl_str_data(&v), want) == 0);
    }
    sl_value_free(v);
    n++;
  }
  ASSERT_EQ(n, 1000);
  ASSERT_OK(sl_pipeline_wait(p, -1, &err), &err);
  sl_pipeline_free(p);

  /* records must be a list: found when the stage starts */
  ASSERT_OK(sl_pipeline_new(e, "v", &p, &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "values", "{\"records\": 5}", &err), &err);
  ASSERT_OK(sl_pipeline_add_json(p, "null", "", &err), &err);
  ASSERT_EQ(sl_pipeline_start(p, &err), SL_ECONFIG);
  ASSERT_MSG(err, "records must be a list");
  sl_pipeline_free(p);

  /* required */
  ASSERT_OK(sl_pipeline_new(e, "v", &p, &err), &err);
  ASSERT_EQ(sl_pipeline_add_json(p, "values", "{}", &err), SL_ECONFIG);
  ASSERT_MSG(err, "option 'records' is required");
  sl_pipeline_free(p);
  sl_engine_free(e);
}

/* ---- loading and running ---- */

TEST(yaml_scalar_types) {
  const char *text =
      "stages:\n"
      "  - values: [1, -2, +3, 1.5, -1e3, true, false, null, ~, \"5\", '7', 2s, 64KiB, hello, \"\",\n"
      "             !!str 9, .inf, 9223372036854775807, True, 0.5e-1, '', 1_000, 0x10, !!float 2]\n"
      "  - values:\n"
      "      records:\n"
      "        - {a: 1, b: [x, {c: null}], \"d e\": yes}\n"
      "        - |\n"
      "          two\n"
      "          lines\n"
      "        - >-\n"
      "          folded\n"
      "          text\n"
      "    name: second\n"
      "  - collect: {name: out, input: [values#1, second]}\n";
  sl_value got;
  sl_error_t err;
  ASSERT_OK(run_collect(text, NULL, 0, "out", &got, &err), &err);
  /* two sources merge in arrival order: pick the records apart by source */
  sl_value first = sl_array(0), second = sl_array(0);
  for (size_t i = 0; i < sl_array_len(&got); i++) {
    const sl_value *r = sl_array_get(&got, i);
    bool from_second = (r->type == SL_TMAP) || (r->type == SL_TSTR && strchr(sl_str_data(r), '\n')) ||
                       (r->type == SL_TSTR && strcmp(sl_str_data(r), "folded text") == 0);
    sl_array_push(from_second ? &second : &first, sl_value_ref(r));
  }
  sl_value_free(got);
  ASSERT_STR(json(&first), "[1,-2,3,1.5,-1000.0,true,false,null,null,\"5\",\"7\",\"2s\",\"64KiB\",\"hello\",\"\","
                           "\"9\",null,9223372036854775807,true,0.05,\"\",\"1_000\",\"0x10\",2.0]");
  ASSERT(sl_array_get(&first, 16)->type == SL_TDOUBLE); /* .inf (JSON writes it as null) */
  ASSERT_STR(json(&second), "[{\"a\":1,\"b\":[\"x\",{\"c\":null}],\"d e\":\"yes\"},\"two\\nlines\\n\",\"folded text\"]");
  sl_value_free(first);
  sl_value_free(second);
}

TEST(yaml_run_values_take) {
  const char *text =
      "pipeline: small\n"
      "workers: 3\n"
      "stages:\n"
      "  - values: [{n: 1}, {n: 2}, {n: 3}, {n: 4}]\n"
      "  - skip: 1\n"
      "  - take: {count: 2}\n"
      "  - collect:\n"
      "    name: out\n";
  sl_value got;
  sl_error_t err;
  ASSERT_OK(run_collect(text, NULL, 0, "out", &got, &err), &err);
  ASSERT_STR(json(&got), "[{\"n\":2},{\"n\":3}]");
  sl_value_free(got);
  sl_config *c;
  ASSERT_OK(load(text, NULL, 0, &c, &err), &err);
  ASSERT_EQ(sl_config_workers(c), 3);
  sl_engine *e = sl_test_engine(1, true);
  sl_pipeline *p = NULL;
  ASSERT_OK(sl_config_build(c, e, &p, &err), &err);
  ASSERT_STR(sl_pipeline_name(p), "small");
  ASSERT_EQ(sl_pipeline_stage_count(p), 4);
  sl_stage_stats s;
  ASSERT_OK(sl_pipeline_stats(p, 1, &s), NULL);
  ASSERT_STR(s.name, "skip#2");
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  ASSERT_OK(load("stages: [{null: {}}]\n", NULL, 0, &c, &err), &err);
  ASSERT_EQ(sl_config_workers(c), 0);
  sl_config_free(c);
}

TEST(yaml_run_file) {
  char dir[64], path[128], yml[128];
  snprintf(dir, sizeof dir, "/tmp/sluice-yaml-XXXXXX");
  ASSERT(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/out.txt", dir);
  snprintf(yml, sizeof yml, "%s/p.yaml", dir);
  FILE *f = fopen(yml, "w");
  ASSERT(f);
  fprintf(f, "stages:\n  - generate: 5\n  - file: { path: \"%s\" }\n", path);
  fclose(f);
  sl_config *c = NULL;
  sl_error_t err;
  sl_error_init(&err);
  ASSERT_OK(sl_config_load_file(yml, NULL, &c, &err), &err);
  sl_engine *e = sl_test_engine(2, false);
  sl_pipeline *p = NULL;
  ASSERT_OK(sl_config_build(c, e, &p, &err), &err);
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  char buf[64] = "";
  f = fopen(path, "r");
  ASSERT(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  unlink(path);
  unlink(yml);
  rmdir(dir);
  ASSERT_STR(buf, "1\n2\n3\n4\n5\n");
  /* a file that is not there */
  ASSERT_EQ(sl_config_load_file("/nonexistent/sluice.yaml", NULL, &c, &err), SL_EIO);
  ASSERT_MSG(err, "/nonexistent/sluice.yaml");
}

TEST(yaml_dead_letter) {
  const char *text =
      "on_error: dead_letter\n"
      "dead_letter: { collect: {} }\n"
      "drain_timeout: 5s\n"
      "stages:\n"
      "  - values: [1, 2]\n"
      "  - collect: {name: out}\n";
  sl_config *c;
  sl_error_t err;
  ASSERT_OK(load(text, NULL, 0, &c, &err), &err);
  sl_engine *e = sl_test_engine(1, true);
  sl_pipeline *p = NULL;
  ASSERT_OK(sl_config_build(c, e, &p, &err), &err);
  ASSERT_STR(sl_str_data(sl_pipeline_setting(p, "dead_letter")), "dead_letter");
  ASSERT_STR(sl_str_data(sl_pipeline_setting(p, "drain_timeout")), "5s");
  ASSERT_EQ(sl_pipeline_stage_count(p), 3);
  sl_stage_stats s;
  ASSERT_OK(sl_pipeline_stats(p, 2, &s), NULL);
  ASSERT_STR(s.name, "dead_letter");
  ASSERT_STR(s.kind, "collect");
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  /* on_error dead_letter without a dead_letter: sl_pipeline_check's message, with its position */
  ASSERT_EQ(build_rc("on_error: dead_letter\nstages:\n  - values: [1]\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:13: stage 'values#1': on_error is dead_letter but the pipeline has no dead_letter sink");
  /* the dead letter takes no input */
  ASSERT_EQ(build_rc("dead_letter: {null: {}, input: x}\nstages:\n  - values: [1]\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:32: stage 'dead_letter': the dead_letter stage receives failed records and takes no input");
}

/* ---- errors, each with its exact position ---- */

TEST(yaml_error_syntax) {
  sl_error_t err;
  sl_config *c;
  ASSERT_EQ(load("stages: [a, b\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at 1:9)");
  ASSERT(c == NULL);
  ASSERT_EQ(load("stages:\n  - take: 1\n - null: {}\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:2: YAML syntax error: ");
  ASSERT_EQ(load("stages: [\"\xff\"]\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:11: YAML syntax error: invalid");
  ASSERT_EQ(load("", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:1: the file is empty: a pipeline file is a map with a stages: list");
  ASSERT_EQ(load("- a\n- b\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:1: a pipeline file is a map of keys (pipeline, stages, ...), not a list");
  ASSERT_EQ(load("stages: []\n---\nstages: []\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:1: the file holds more than one YAML document");
  ASSERT_EQ(load("x: &a [1]\nstages: *a\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:9: aliases (*a) are not supported");
  ASSERT_EQ(load("pipeline: x\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:1: the file has no stages: list");
}

TEST(yaml_error_top_level) {
  sl_error_t err;
  sl_config *c;
  ASSERT_EQ(load("stages: []\nstagse: []\nworkers: 0\npipeline: [a]\nlua: 5\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:1: unknown key 'stagse'; did you mean 'stages'?");
  ASSERT_MSG(err, "t.yaml:3:10: workers must be an integer from 1 to 256 (got 0)");
  ASSERT_MSG(err, "t.yaml:4:11: pipeline (the pipeline's name) must be a string");
  ASSERT_MSG(err, "t.yaml:5:6: lua must be Lua code (a string)");
  ASSERT_EQ(lines_of(err.msg), 4);
  ASSERT_EQ(load("stages: {a: 1}\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:9: stages must be a list of stages");
  /* settings are checked by sl_pipeline_set at build, at the value's position */
  ASSERT_EQ(build_rc("stages: [{values: [1]}, {null: ~}]\ndrain_timeout: soon\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:16: setting 'drain_timeout' expects a duration");
  ASSERT_EQ(build_rc("stages: [{values: [1]}, {null: ~}]\non_error: maybe\nmemory_limit: -1MiB\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:11: setting 'on_error' expects skip|fail|dead_letter");
  ASSERT_MSG(err, "t.yaml:3:15: setting 'memory_limit' ");
  ASSERT_EQ(lines_of(err.msg), 2);
}

TEST(yaml_error_stages) {
  sl_error_t err;
  sl_config *c;
  /* unknown kind (sl_pipeline_add's message, given _where); err->stage is the stage */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - nul: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:5: stage 'nul#2': unknown stage kind 'nul': did you mean 'null'?");
  ASSERT_STR(err.stage, "nul#2");
  /* unknown option: the position of the key */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - take: {cuont: 1}\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:12: stage 'take#2': unknown option 'cuont' for take; did you mean 'count'?");
  ASSERT_STR(err.stage, "take#2");
  /* wrong type, scalar shorthand: the position of the value */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - take: many\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:11: stage 'take#2': option 'count' expects an integer (got \"many\")");
  /* bad size */
  ASSERT_EQ(build_rc("stages:\n  - lines: {path: x, max_line: lots}\n    name: in\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:32: stage 'in': option 'max_line' expects a size");
  /* a kind without a primary option takes no shorthand */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - null: 5\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:11: stage 'null#2': a null stage takes a map of options, not a single value");
  /* zero kind keys, two kind keys, not a map: found at load, all at once (partition_by is a
   * common key, not a second kind key) */
  ASSERT_EQ(load("stages:\n"
                 "  - generate: 3\n"
                 "  - name: lonely\n"
                 "  - take: 1\n"
                 "    skip: 1\n"
                 "  - take: 1\n"
                 "    partition_by: r.host\n"
                 "  - just text\n"
                 "  - null: {}\n"
                 "    _where: x\n",
                 NULL, 0, &c, &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:5: stage 'lonely' has no kind key: a stage is a map with one kind key (such as take: or file:) and common keys");
  ASSERT_MSG(err, "t.yaml:5:5: stage 'take#3' has two kind keys, 'take' and 'skip': write each as its own stage");
  ASSERT_MSG(err, "t.yaml:8:5: stage #5 must be a map with one kind key (got a string)");
  ASSERT_MSG(err, "t.yaml:10:5: stage 'null#6': unknown key '_where'");
  ASSERT_EQ(lines_of(err.msg), 4);
  ASSERT_STR(err.stage, "lonely");
  /* an option given both inside the kind's map and next to it: at the second one */
  ASSERT_EQ(build_rc("stages:\n  - values: {records: [1], name: a}\n    name: b\n  - null: {}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:28: stage 'b': 'name' is given twice");
  /* duplicate keys in any map */
  ASSERT_EQ(load("stages:\n  - generate: 3\n    name: a\n    name: b\n  - null: {a: 1, a: 2}\n", NULL, 0, &c, &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:4:5: duplicate key 'name' (first at 3:5)");
  ASSERT_MSG(err, "t.yaml:5:18: duplicate key 'a' (first at 5:12)");
  ASSERT_EQ(lines_of(err.msg), 2);
}

TEST(yaml_error_graph) {
  sl_error_t err;
  /* input naming no stage: sl_pipeline_check's message with the input's position */
  ASSERT_EQ(build_rc("stages:\n  - generate: {count: 3, name: gen}\n  - null:\n    input: gne\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:4:12: stage 'null#2': input 'gne' names no stage; did you mean 'gen'?");
  ASSERT_STR(err.stage, "null#2");
  /* a cycle */
  ASSERT_EQ(build_rc("stages:\n"
                     "  - generate: 1\n"
                     "    name: g\n"
                     "  - skip: 1\n"
                     "    name: a\n"
                     "    input: [g, b]\n"
                     "  - take: 1\n"
                     "    name: b\n"
                     "    input: a\n"
                     "  - null:\n"
                     "    input: b\n",
                     &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:9:12: stage 'b' reads from 'a', which depends on 'b': the graph has a cycle");
  /* several graph problems at once */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - null: {input: x}\n  - null: {input: y}\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3:19: stage 'null#2': input 'x' names no stage");
  ASSERT_MSG(err, "t.yaml:4:19: stage 'null#3': input 'y' names no stage");
  ASSERT_MSG(err, "t.yaml:2:15: stage 'generate#1': its output goes nowhere");
  /* common keys checked by sl_pipeline_add, at the value's position */
  ASSERT_EQ(build_rc("stages:\n  - generate: 3\n  - null: {}\n    parallelism: lots\n", &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:4:18: stage 'null#2': parallelism must be an integer from 1 to 1024, or auto");
  ASSERT_STR(err.stage, "null#2");
}

TEST(yaml_several_errors) {
  sl_error_t err;
  /* problems of several stages at build: every one, one per line; the first one's stage */
  ASSERT_EQ(build_rc("stages:\n"
                     "  - generatr: 3\n"
                     "  - take: {count: x}\n"
                     "  - skip: {count: 1, what: 2}\n"
                     "  - nul: {}\n",
                     &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:15: stage 'generatr#1': unknown stage kind 'generatr': did you mean 'generate'?");
  ASSERT_MSG(err, "t.yaml:3:19: stage 'take#2': option 'count' expects an integer");
  ASSERT_MSG(err, "t.yaml:4:22: stage 'skip#3': unknown option 'what' for skip");
  ASSERT_MSG(err, "t.yaml:5:5: stage 'nul#4': unknown stage kind 'nul'");
  ASSERT_EQ(lines_of(err.msg), 4);
  ASSERT_STR(err.stage, "generatr#1");
  /* many problems: the message stays within its 1024 bytes and says how many were left out */
  sl_buf b;
  sl_buf_init(&b);
  sl_buf_printf(&b, "stages:\n");
  for (int i = 0; i < 40; i++) sl_buf_printf(&b, "  - nosuchkind%d: {}\n", i);
  ASSERT_EQ(build_rc(b.data, &err), SL_ECONFIG);
  sl_buf_close(&b);
  ASSERT(strlen(err.msg) < sizeof err.msg);
  ASSERT_MSG(err, "t.yaml:2:5: stage 'nosuchkind0#1': unknown stage kind 'nosuchkind0'");
  ASSERT_MSG(err, "more problems");
  /* one problem longer than the message (a long file name) is cut, not dropped */
  char name[1500];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = 0;
  sl_config *c;
  sl_load_options o = {NULL, 0};
  ASSERT_EQ(sl_config_load_text("x: 1\n", 5, name, &o, &c, &err), SL_ECONFIG);
  ASSERT(strncmp(err.msg, "nnnnnnnn", 8) == 0);
  ASSERT_MSG(err, "(and 1 more problems)");
}

TEST(yaml_lua_file_errors) {
  sl_config *c;
  sl_error_t err;
  sl_load_options o = {NULL, 0};
  const char *text = "lua_file: nope.lua\nstages: [{values: [1]}, {null: ~}]\n";
  ASSERT_EQ(sl_config_load_text(text, strlen(text), "/nonexistent/dir/p.yaml", &o, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "/nonexistent/dir/p.yaml:1:11: lua_file: cannot read '/nonexistent/dir/nope.lua': No such file or directory");
  text = "lua_file: /tmp\nstages: [{values: [1]}, {null: ~}]\n";
  ASSERT_EQ(load(text, NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:11: lua_file: cannot read '/tmp': not a regular file");
  ASSERT_EQ(load("lua_file: [a]\nstages: []\n", NULL, 0, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:1:11: lua_file must be the path of a Lua file");
}

/* ---- ${VAR} ---- */

TEST(yaml_env) {
  setenv("SL_YAML_N", "2", 1);
  setenv("SL_YAML_EMPTY", "", 1);
  unsetenv("SL_YAML_UNSET");
  const char *text =
      "stages:\n"
      "  - values:\n" /* a plain ${...} only in block style: in [...] a { ends a plain scalar */
      "      - \"${SL_YAML_N}\"\n"
      "      - ${SL_YAML_N}\n"
      "      - [\"${SL_YAML_UNSET:-d}\", \"$${SL_YAML_N}\", \"a$b\", \"x${SL_YAML_N}y${SL_YAML_N}\"]\n"
      "      - [\"${SL_YAML_EMPTY:-e}\", \"[${SL_YAML_EMPTY}]\"]\n"
      "      - ${SL_YAML_UNSET:-}\n"
      "  - take: ${SL_YAML_N}\n"
      "  - collect: {name: out}\n";
  sl_value got;
  sl_error_t err;
  ASSERT_OK(run_collect(text, NULL, 0, "out", &got, &err), &err);
  ASSERT_STR(json(&got), "[\"2\",2]");
  sl_value_free(got);
  ASSERT_OK(run_collect(text, (const char *const[]){"take#2.count=100"}, 1, "out", &got, &err), &err);
  ASSERT_STR(json(&got), "[\"2\",2,[\"d\",\"${SL_YAML_N}\",\"a$b\",\"x2y2\"],[\"e\",\"[]\"],null]");
  sl_value_free(got);
  /* errors: unset without default, unterminated, bad name; all at once */
  sl_config *c;
  ASSERT_EQ(load("stages:\n  - take: ${SL_YAML_UNSET}\n  - take: \"${SL_YAML_N\"\n  - take: ${1x}\n", NULL, 0, &c, &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:2:11: environment variable 'SL_YAML_UNSET' is not set (write ${SL_YAML_UNSET:-default} to give a default)");
  ASSERT_MSG(err, "t.yaml:3:12: unterminated ${ in \"${SL_YAML_N\"");
  ASSERT_MSG(err, "t.yaml:4:11: bad variable name in \"${1x}\": write ${NAME} or ${NAME:-default}");
  ASSERT_EQ(lines_of(err.msg), 3);
  unsetenv("SL_YAML_N");
  unsetenv("SL_YAML_EMPTY");
}

/* ---- --set ---- */

TEST(yaml_set) {
  const char *text =
      "pipeline: p1\n"
      "workers: 2\n"
      "stages:\n"
      "  - values: [1, 2, 3, 4]\n"
      "  - take: 1\n"
      "  - take: {count: 3}\n"
      "    name: t.2\n"
      "  - collect: {name: out}\n";
  const char *sets[] = {"workers=3", "pipeline=p2", "take#2.count=4", "t.2.count=2", "out.queue.capacity=5"};
  sl_config *c;
  sl_error_t err;
  ASSERT_OK(load(text, sets, 5, &c, &err), &err);
  ASSERT_EQ(sl_config_workers(c), 3);
  sl_engine *e = sl_test_engine(1, true);
  sl_pipeline *p = NULL;
  ASSERT_OK(sl_config_build(c, e, &p, &err), &err);
  ASSERT_STR(sl_pipeline_name(p), "p2");
  ASSERT_OK(sl_pipeline_run(p, &err), &err);
  sl_stage_stats s;
  ASSERT_OK(sl_pipeline_stats(p, 1, &s), NULL); /* take#2: 1 -> 4 */
  ASSERT_EQ(s.out, 4);
  ASSERT_OK(sl_pipeline_stats(p, 2, &s), NULL); /* t.2: 3 -> 2 */
  ASSERT_STR(s.name, "t.2");
  ASSERT_EQ(s.out, 2);
  ASSERT_OK(sl_pipeline_stats(p, 3, &s), NULL);
  ASSERT_EQ(s.queue_cap, 5);
  ASSERT_EQ(s.queue_len, 2);
  sl_pipeline_free(p);
  sl_engine_free(e);
  sl_config_free(c);
  /* errors name the --set argument */
  ASSERT_EQ(load(text, (const char *const[]){"nosuch.count=1"}, 1, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 'nosuch.count=1': no stage is named 'nosuch'");
  ASSERT_EQ(load(text, (const char *const[]){"tak#2.count=1"}, 1, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 'tak#2.count=1': no stage is named 'tak#2'; did you mean 'take#2'?");
  ASSERT_EQ(load(text, (const char *const[]){"workers"}, 1, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 'workers': expected path=value");
  ASSERT_EQ(load(text, (const char *const[]){"=4"}, 1, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set '=4': expected path=value");
  ASSERT_EQ(load(text, (const char *const[]){"workers=many", "wokers=1"}, 2, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 'workers=many': workers must be an integer from 1 to 256 (got \"many\")");
  ASSERT_MSG(err, "--set 'wokers=1': unknown key 'wokers'; did you mean 'workers'?");
  ASSERT_EQ(load(text, (const char *const[]){"t.2.name=x", "out.=1"}, 2, &c, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 't.2.name=x': --set cannot change a stage's name or input; edit the file");
  ASSERT_MSG(err, "--set 'out.=1': expected path=value");
  /* a wrong value set on a stage is reported by the stage, naming the --set argument */
  ASSERT_EQ(load(text, (const char *const[]){"take#2.count=x"}, 1, &c, &err), 0);
  e = sl_test_engine(1, true);
  ASSERT_EQ(sl_config_build(c, e, &p, &err), SL_ECONFIG);
  ASSERT_MSG(err, "--set 'take#2.count=x': stage 'take#2': option 'count' expects an integer (got \"x\")");
  sl_engine_free(e);
  sl_config_free(c);
}

/* ---- positions of Lua code ---- */

/* A syntax error on the third line of the file, inside the lua: block, is reported at t.yaml:3. */
TEST(yaml_lua_code) {
  sl_error_t err;
  ASSERT_EQ(build_rc("lua: |\n"
                     "  function f(r) return r end\n"
                     "  x = = 1\n"
                     "stages: [{values: [1]}, {null: ~}]\n",
                     &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:3");
  ASSERT_OK(build_rc("lua: \"function g(r) return r end\"\nstages: [{values: [1]}, {null: ~}]\n", &err), &err);
}

/* ---- tests: ---- */

static const char *tests_yaml =
    "stages:\n"
    "  - values: [0]\n"
    "    name: src\n"
    "  - skip: 1\n"
    "    name: s\n"
    "  - file: /nonexistent/sluice/out.txt\n"
    "    name: out\n"
    "tests:\n"
    "  - name: passes\n"
    "    input: {stage: s, records: [1, 2, 3]}\n"
    "    expect: {stage: out, records: [2, 3]}\n"
    "  - name: fails\n"
    "    input: {stage: s, records: [{a: 1}, {a: 2}, {a: 3}]}\n"
    "    expect: {stage: s, records: [{a: 2}, {a: 4}, {a: 5}]}\n"
    "  - name: counts\n"
    "    input: {stage: src, records: [a, b, c]}\n"
    "    expect: {stage: out, count: 2}\n"
    "  - input: {stage: src, records: [a]}\n"
    "    expect: {stage: s, count: 3}\n"
    "  - name: predicate\n"
    "    input: {stage: src, records: [a]}\n"
    "    expect: {stage: s, lua: \"#records == 0\"}\n";

TEST(yaml_tests_run) {
  sl_config *c;
  sl_error_t err;
  ASSERT_OK(load(tests_yaml, NULL, 0, &c, &err), &err);
  ASSERT_EQ(sl_config_test_count(c), 5);
  ASSERT_STR(sl_config_test_name(c, 0), "passes");
  ASSERT_STR(sl_config_test_name(c, 3), "test #4");
  ASSERT(sl_config_test_name(c, 5) == NULL);
  sl_engine *e = sl_test_engine(2, true);
  sl_buf report;
  sl_buf_init(&report);
  bool passed = false;
  /* 1: records injected at s (replacing its input), the file sink replaced: never opened */
  ASSERT_OK(sl_config_run_test(c, 0, e, &passed, &report, &err), &err);
  ASSERT(passed);
  ASSERT_EQ(report.len, 0);
  /* 2: a readable diff */
  ASSERT_OK(sl_config_run_test(c, 1, e, &passed, &report, &err), &err);
  ASSERT(!passed);
  ASSERT_STR(report.data,
             "stage 's': expected 3 records, got 2; first difference at index 1\n"
             "  [0] {\"a\":2}\n"
             "- [1] {\"a\":4}\n"
             "+ [1] {\"a\":3}\n"
             "- [2] {\"a\":5}\n");
  sl_buf_close(&report);
  /* 3: the real source is left out, records injected in its place */
  ASSERT_OK(sl_config_run_test(c, 2, e, &passed, &report, &err), &err);
  ASSERT(passed);
  /* 4: a count that does not match */
  ASSERT_OK(sl_config_run_test(c, 3, e, &passed, &report, &err), &err);
  ASSERT(!passed);
  ASSERT_STR(report.data, "stage 's': expected 3 records, got 0\n");
  sl_buf_close(&report);
  /* 5: expect.lua, a predicate over the records s emitted (none: its one record was skipped) */
  ASSERT_OK(sl_config_run_test(c, 4, e, &passed, &report, &err), &err);
  ASSERT(passed);
  ASSERT_EQ(sl_config_run_test(c, 5, e, &passed, &report, &err), SL_EINVAL);
  sl_buf_close(&report);
  sl_engine_free(e);
  sl_config_free(c);
}

TEST(yaml_tests_graph) {
  /* a branch with a dead letter and a merge: only what is downstream of the input runs */
  const char *text =
      "dead_letter: {stdout: {}}\n"
      "stages:\n"
      "  - lines: /nonexistent/in.log\n"
      "    name: a\n"
      "  - generate: 5\n"
      "    name: b\n"
      "  - skip: 0\n"
      "    name: m\n"
      "    input: [a, b]\n"
      "  - take: 2\n"
      "    name: t\n"
      "  - stdout: {}\n"
      "  - null: {input: m}\n"
      "tests:\n"
      "  - name: merge\n"
      "    input: {stage: m, records: [1, 2, 3]}\n"
      "    expect: {stage: t, records: [1, 2]}\n"
      "  - name: into a sink\n"
      "    input: {stage: stdout#5, records: [x]}\n"
      "    expect: {stage: stdout#5, records: [x]}\n"
      "  - name: dead letter is empty\n"
      "    input: {stage: b, records: [1]}\n"
      "    expect: {stage: dead_letter, count: 0}\n"
      "  - name: unreachable\n"
      "    input: {stage: t, records: [1]}\n"
      "    expect: {stage: m, count: 0}\n";
  sl_config *c;
  sl_error_t err;
  ASSERT_OK(load(text, NULL, 0, &c, &err), &err);
  sl_engine *e = sl_test_engine(1, true);
  bool passed = false;
  sl_buf report;
  sl_buf_init(&report);
  for (size_t i = 0; i < 3; i++) {
    ASSERT_OK(sl_config_run_test(c, i, e, &passed, &report, &err), &err);
    if (!passed) SL__FAIL("test %zu: %s", i, report.data);
  }
  ASSERT_EQ(sl_config_run_test(c, 3, e, &passed, &report, &err), SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:26:21: test 'unreachable': expect.stage 'm' receives no records from input.stage 't'");
  sl_buf_close(&report);
  sl_engine_free(e);
  sl_config_free(c);
}

TEST(yaml_tests_errors) {
  sl_config *c;
  sl_error_t err;
  ASSERT_EQ(load("stages:\n"
                 "  - values: [1]\n"
                 "    name: v\n"
                 "  - null: {}\n"
                 "tests:\n"
                 "  - name: a\n"
                 "    input: {stage: w, records: [1]}\n"
                 "    expect: {stage: v, records: 1}\n"
                 "  - name: b\n"
                 "    input: {stage: v}\n"
                 "    expect: {stage: v, count: 1, records: []}\n"
                 "    extra: 1\n"
                 "  - name: c\n"
                 "    input: {stage: v, records: [1]}\n"
                 "  - 5\n",
                 NULL, 0, &c, &err),
            SL_ECONFIG);
  ASSERT_MSG(err, "t.yaml:7:20: test 'a': input.stage 'w' names no stage; did you mean 'v'?");
  ASSERT_MSG(err, "t.yaml:8:33: test 'a': expect.records must be a list");
  ASSERT_MSG(err, "t.yaml:10:12: test 'b': input needs stage and records");
  ASSERT_MSG(err, "t.yaml:11:13: test 'b': expect takes one of records, count or lua");
  ASSERT_MSG(err, "t.yaml:12:5: test 'b': unknown key 'extra' (a test has name, input and expect)");
  ASSERT_MSG(err, "t.yaml:13:5: test 'c': expect is missing");
  ASSERT_MSG(err, "t.yaml:15:5: test #4 must be a map with name, input and expect");
  ASSERT_EQ(lines_of(err.msg), 7);
}
