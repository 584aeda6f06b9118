/*
 * codec.h — record encodings for sources, sinks and the encode/decode stages (sl_codec_,
 * sl_decoder_, sl_encoder_ prefixes; meant for stages).
 *
 * Codecs (DESIGN section 6): lines (one string per line, newline stripped), jsonl (one JSON
 * value per line), csv (RFC 4180; with a header or `columns` each row is a map, else an array
 * of strings), raw (bytes as they are), frames (each record behind a 4-byte big-endian length),
 * json (the whole input is one JSON text; for decode/encode of single values). `auto` writes
 * strings as lines and other values as JSON, and reads as lines.
 *
 * A decoder is a streaming splitter and parser: it is shown the bytes not used yet and takes one
 * record from their start, or says it needs more. It keeps no bytes itself, so a source keeps
 * one buffer and a decode stage passes a whole string with eof set. An encoder appends records
 * to an sl_buf. Both count what they had to repair (integers too big for int64, strings with
 * invalid UTF-8) for a warning at the end; neither is thread-safe (one per stage instance).
 */
#ifndef SL_CODEC_H
#define SL_CODEC_H

#include <stddef.h>

#include "sluice.h"

/* The order matches SL_CODEC_CHOICES. */
enum { SL_CODEC_AUTO = 0, SL_CODEC_LINES, SL_CODEC_JSONL, SL_CODEC_CSV, SL_CODEC_RAW, SL_CODEC_FRAMES, SL_CODEC_JSON };
#define SL_CODEC_CHOICES "auto|lines|jsonl|csv|raw|frames|json"

/* The codec options of a stage; stages embed this struct in their context and list its options
 * with SL_CODEC_OPTIONS (so every codec option is spelled the same everywhere). */
typedef struct sl_codec_opts {
  int codec;          /* SL_CODEC_* */
  bool header;        /* csv: a header row (read: names the columns; write: written first) */
  sl_value columns;   /* csv: array of column names (read: of a file without header; write: order) */
  char *delimiter;    /* csv: the field separator, one byte */
  int64_t max_record; /* the longest record read */
} sl_codec_opts;

/* The option rows of a stage that reads or writes with a codec (T its context type, m the
 * sl_codec_opts member in it); readers add SL_CODEC_READ_OPTIONS. */
#define SL_CODEC_OPTIONS(T, m, codec_default, codec_help, codec_flags)                                         \
  {SL_OPT_ENUM, "codec", codec_default, offsetof(T, m.codec), codec_help, SL_CODEC_CHOICES, codec_flags},       \
      {SL_OPT_BOOL, "header", "false", offsetof(T, m.header),                                                  \
       "csv: the first row holds the column names (reading: rows become maps; writing: one is written)", NULL, 0}, \
      {SL_OPT_VALUE, "columns", NULL, offsetof(T, m.columns),                                                  \
       "csv: a list of column names (reading without a header: rows become maps; writing: the column order)",  \
       NULL, 0},                                                                                               \
      {SL_OPT_STRING, "delimiter", ",", offsetof(T, m.delimiter), "csv: the field separator (one byte)", NULL, 0}
#define SL_CODEC_READ_OPTIONS(T, m)                                                                            \
  {SL_OPT_SIZE, "max_record", "1MiB", offsetof(T, m.max_record),                                               \
   "the longest record read (a line, a csv row, a frame; raw: the size of each piece)", NULL, 0}

/* Checks the options (columns a list of strings, a one-byte delimiter; for reading, max_record
 * >= 1). errors: config (err->msg says what to change) */
int sl_codec_check(const sl_codec_opts *o, bool reading, sl_error_t *err);

/* The same as a kind's check callback would report it: "<where>stage '<stage>': <problem>". */
int sl_codec_check_stage(const sl_codec_opts *o, bool reading, const char *stage, const char *where, sl_error_t *err);

/* Decoder results besides errors. */
enum { SL_DECODE_MORE = 0, SL_DECODE_RECORD = 1 };

typedef struct sl_decoder {
  int codec;
  char delim;
  size_t max_record;
  bool header_pending;   /* csv: the next row is the header */
  sl_value columns;      /* csv: array of column names, or nil (owned) */
  uint64_t line;         /* line breaks used so far (the next record starts on line + 1) */
  uint64_t offset;       /* bytes used so far */
  uint64_t big_ints;     /* integers beyond int64 read as doubles */
  uint64_t warned;       /* big_ints when last reported */
  sl_buf scratch;        /* csv: a quoted field being unescaped */
} sl_decoder;

/* errors: config (as sl_codec_check) */
int sl_decoder_init(sl_decoder *d, const sl_codec_opts *o, sl_error_t *err);
void sl_decoder_close(sl_decoder *d);
/* Takes the next record from buf[0, len) (the bytes after those already used; eof: no more
 * will follow). Returns SL_DECODE_RECORD (*out owned, *used bytes used), SL_DECODE_MORE (*used
 * may be > 0: a header or blank lines were used; at eof: the end), SL_EDATA (the record at
 * the start is invalid: *used bytes are skipped, *out holds them as a string, err->msg names
 * the line and byte), or a fatal error: inval (a record longer than max_record, a truncated
 * frame: the input cannot be read on), nomem. */
int sl_decoder_next(sl_decoder *d, const char *buf, size_t len, bool eof, size_t *used, sl_value *out,
                    sl_error_t *err);
/* frames: the length that the 4 bytes at p announce, for the frame at byte `offset`: 0 and *n,
 * or inval (more than max; err says so and what to do). */
int sl_frame_length(const unsigned char *p, size_t max, uint64_t offset, size_t *n, sl_error_t *err);
/* frames: a frame at byte `offset` cut short, in its length (announced 0: `present` of its 4
 * bytes) or its bytes. Returns inval with the message in err. */
int sl_frame_truncated(uint64_t offset, size_t announced, size_t present, sl_error_t *err);
/* Logs a warning through st if integers were read as doubles since the last report. */
void sl_decoder_report(sl_decoder *d, sl_stage *st);

typedef struct sl_encoder {
  int codec;
  char delim;
  bool header;         /* csv: write the header before the first row */
  bool header_done;
  sl_value columns;    /* csv: column order for maps (given, or the first map's keys), owned */
  uint64_t bad_utf8;   /* strings written with U+FFFD for invalid UTF-8 */
  uint64_t warned;     /* bad_utf8 when last reported */
} sl_encoder;

/* errors: config */
int sl_encoder_init(sl_encoder *e, const sl_codec_opts *o, sl_error_t *err);
void sl_encoder_close(sl_encoder *e);
/* Appends record v (borrowed) to out, with its terminator (newline) when term is set; frames
 * always get their length. errors: data (v cannot be written in this codec: raw and frames
 * take strings; msg says why; out is unchanged), nomem */
int sl_encoder_put(sl_encoder *e, sl_buf *out, const sl_value *v, bool term, char *msg, size_t msglen);
/* raw and frames: appends what goes before the bytes of string record v (frames: its length),
 * so that a sink can write big records' bytes from where they are rather than copy them into
 * out. errors: data (v is not a string, or too long for a frame; msg says why), nomem */
int sl_encoder_put_head(sl_encoder *e, sl_buf *out, const sl_value *v, char *msg, size_t msglen);
/* Logs a warning through st if strings with invalid UTF-8 were written since the last report. */
void sl_encoder_report(sl_encoder *e, sl_stage *st);

/* Splitting behind a source (vm/cut.c). With 2 or more workers a `lines` source, or a file_in
 * source reading jsonl, only cuts its input into runs of whole lines; a hidden node splits (and
 * parses) them on every worker. sl_stage_splits_behind says whether st is such a source.
 * sl_lines_cut finds where the next run of buf[0, len) ends, checking each line against max as
 * the source would (cr_counts: a CR before the line break counts toward the length, as for
 * `lines`; else it does not, as for jsonl): it returns SL_DECODE_RECORD (*take bytes of whole
 * lines, *lines line breaks in them; a run ends after 256 lines, at the first line break at or
 * past 64 KiB, before a line too long, or at eof with the rest), SL_DECODE_MORE (no whole line yet), or
 * SL_EINVAL (the first line is longer than max). */
bool sl_stage_splits_behind(const sl_stage *st);
int sl_lines_cut(const char *buf, size_t len, bool eof, size_t max, bool cr_counts, size_t *take, uint64_t *lines);
/* Emits the run p[0, n) (whole lines, as sl_lines_cut found them) with the line breaks and bytes
 * before it in the input and the input's name (borrowed). errors: nomem */
int sl_lines_emit_run(sl_emitter *em, const char *p, size_t n, uint64_t line, uint64_t offset, const sl_value *name);

#endif
