/* mmrec C API: load, run, sample from and train MM-Rec models from C, or
   from any language with a C FFI (Rust, Go, Python ctypes/cffi). The stable
   ABI of libmmrec.so.0 (README, "ABI policy").

     mmrec_model* m;
     if (mmrec_model_load("model.safetensors", &m) != MMREC_OK) {
       fprintf(stderr, "%s\n", mmrec_last_error());
       return 1;
     }
     mmrec_state* s;
     mmrec_state_create(m, &s);
     int32_t ids[64];
     size_t n;
     mmrec_tokenize(m, "The ", 4, ids, 64, &n);
     mmrec_state_feed(s, ids, n);                    // logits of the last token kept in s
     for (int i = 0; i < 100; ++i) {
       int32_t next;
       mmrec_state_sample(s, 0.8f, 40, &next);       // temperature, top-k (the state's RNG)
       mmrec_state_feed(s, &next, 1);
     }
     mmrec_state_free(s);
     mmrec_model_free(m);

   Conventions:
   - Handles are opaque. Every function returns an mmrec_status; on failure
     mmrec_last_error() gives a one-line message (per thread), outputs are
     left unchanged and nothing is leaked. No C++ exception crosses this API.
   - A NULL or foreign handle is MMREC_ERR_HANDLE; freeing NULL is a no-op.
     A handle must not be used after it is freed.
   - A model may be shared by any number of threads and states; a state or a
     trainer by one thread at a time. States keep their model alive: the
     model may be freed before its states.
   - Buffers: the caller passes its capacity; when it is too small the call
     returns MMREC_ERR_BUFFER and stores the size needed in *out_len.
   - The library never prints, exits or keeps hidden global state; only
     mmrec_set_num_threads is process-wide. Set OMP_WAIT_POLICY=PASSIVE in
     the host's environment (README, "Threads"). */
#ifndef MMREC_MMREC_C_H
#define MMREC_MMREC_C_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define MMREC_C_API __attribute__((visibility("default")))
#else
#define MMREC_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MMREC_VERSION_MAJOR 0
#define MMREC_VERSION_MINOR 1
#define MMREC_VERSION_PATCH 0

typedef enum mmrec_status {
  MMREC_OK = 0,
  MMREC_ERR_ARGUMENT = 1,     /* a NULL pointer, an out-of-range value, a token id outside the vocabulary */
  MMREC_ERR_HANDLE = 2,       /* a NULL handle or one of another kind */
  MMREC_ERR_FILE = 3,         /* a file that cannot be read or written, or is not a valid checkpoint */
  MMREC_ERR_CONFIG = 4,       /* a config JSON that does not parse or has a bad value (the message names the key) */
  MMREC_ERR_BUFFER = 5,       /* the caller's buffer is too small (*out_len says how large it must be) */
  MMREC_ERR_MEMORY = 6,       /* out of memory */
  MMREC_ERR_UNSUPPORTED = 7,  /* valid but not supported by this build (e.g. a dtype) */
  MMREC_ERR_STATE = 8,        /* the call needs something not there yet (sampling before any token was fed) */
  MMREC_ERR_INTERNAL = 9      /* any other failure (the message says what) */
} mmrec_status;

/* Weight storage types of checkpoints. (The last enumerator is no dtype: it
   makes every int a valid value of the type, so that an unknown value a host
   passes is an MMREC_ERR_ARGUMENT, never undefined behaviour.) */
typedef enum mmrec_dtype {
  MMREC_DTYPE_F32 = 0,
  MMREC_DTYPE_BF16 = 1,
  MMREC_DTYPE_I8 = 2,
  MMREC_DTYPE_INT_RANGE_ = 0x7fffffff
} mmrec_dtype;

typedef struct mmrec_model mmrec_model;
typedef struct mmrec_state mmrec_state;
typedef struct mmrec_trainer mmrec_trainer;

/* ---- library ---- */

/* "0.1.0" (the library's, not the header's: compare with MMREC_VERSION_*). */
MMREC_C_API const char* mmrec_version(void);
/* The message of the last failed call on this thread ("" if none failed).
   Valid until the next failing call on this thread. */
MMREC_C_API const char* mmrec_last_error(void);
/* "MMREC_OK", "MMREC_ERR_ARGUMENT", ... ("unknown status" otherwise). */
MMREC_C_API const char* mmrec_status_name(mmrec_status status);
/* Threads of the library's kernels, process-wide (0: all cores). */
MMREC_C_API mmrec_status mmrec_set_num_threads(int threads);

/* ---- models ---- */

/* Loads a checkpoint written by mmrec (safetensors: f32 or bf16 weights,
   the model config and, if trained with one, the BPE tokenizer in its
   metadata; without one the tokenizer is byte-level). */
MMREC_C_API mmrec_status mmrec_model_load(const char* path, mmrec_model** out);
/* A new model initialised from a seed: config_json is the `model` section
   of a training config (e.g. {"dim": 64, "layers": 2}); byte-level tokenizer. */
MMREC_C_API mmrec_status mmrec_model_create(const char* config_json, uint64_t seed, mmrec_model** out);
MMREC_C_API void mmrec_model_free(mmrec_model* model);
/* Writes the model (weights cast to dtype, config and tokenizer) atomically. */
MMREC_C_API mmrec_status mmrec_model_save(const mmrec_model* model, const char* path, mmrec_dtype dtype);
MMREC_C_API mmrec_status mmrec_model_vocab_size(const mmrec_model* model, int32_t* out);
MMREC_C_API mmrec_status mmrec_model_num_parameters(const mmrec_model* model, int64_t* out);
/* The dtype the weights had in the file loaded (F32 for a created model). */
MMREC_C_API mmrec_status mmrec_model_dtype(const mmrec_model* model, mmrec_dtype* out);
/* The model config as JSON text with a terminating NUL (*out_len: its
   length without the NUL; cap must be at least *out_len + 1). */
MMREC_C_API mmrec_status mmrec_model_config_json(const mmrec_model* model, char* buf, size_t cap, size_t* out_len);

/* ---- the model's tokenizer ---- */

/* text (len bytes, any bytes) -> token ids; *out_len = the number of ids. */
MMREC_C_API mmrec_status mmrec_tokenize(const mmrec_model* model, const char* text, size_t len, int32_t* ids,
                                        size_t cap, size_t* out_len);
/* ids -> the bytes they stand for (no NUL added); *out_len = the number of bytes. */
MMREC_C_API mmrec_status mmrec_detokenize(const mmrec_model* model, const int32_t* ids, size_t n, char* buf,
                                          size_t cap, size_t* out_len);

/* ---- streaming state: one sequence fed token by token ---- */

/* A fresh state (no tokens seen) whose sampler is seeded with 1. */
MMREC_C_API mmrec_status mmrec_state_create(const mmrec_model* model, mmrec_state** out);
MMREC_C_API void mmrec_state_free(mmrec_state* state);
/* Runs the model over n >= 1 tokens, carrying the state; keeps the logits of
   the last one. The tokens are checked before anything changes. */
MMREC_C_API mmrec_status mmrec_state_feed(mmrec_state* state, const int32_t* tokens, size_t n);
/* Copies the last fed token's logits (vocab_size floats) into out. */
MMREC_C_API mmrec_status mmrec_state_logits(const mmrec_state* state, float* out, size_t cap);
/* Draws the next token from the last logits: temperature 0 is greedy; top_k
   0 samples the whole vocabulary. Uses and advances the state's RNG. */
MMREC_C_API mmrec_status mmrec_state_sample(mmrec_state* state, float temperature, int32_t top_k, int32_t* out);
/* Reseeds the state's sampler. */
MMREC_C_API mmrec_status mmrec_state_seed(mmrec_state* state, uint64_t seed);
/* Back to no tokens seen (the sampler's position is kept). */
MMREC_C_API mmrec_status mmrec_state_reset(mmrec_state* state);
/* A deep copy (recurrent state, memory, last logits, sampler): continuing
   both gives the same results, e.g. beam search or a cached prompt prefix. */
MMREC_C_API mmrec_status mmrec_state_copy(const mmrec_state* state, mmrec_state** out);
/* Tokens fed since creation or the last reset. */
MMREC_C_API mmrec_status mmrec_state_position(const mmrec_state* state, int64_t* out);

/* ---- training on in-memory text ---- */

typedef struct mmrec_step_result {
  int64_t step;      /* optimizer steps done (1 after the first) */
  double loss;       /* mean next-token cross-entropy of the step (nats) */
  double lr;         /* learning rate used */
  double grad_norm;  /* global gradient norm before clipping */
} mmrec_step_result;

/* A trainer from a training config (README, "Training": the sections model,
   train and schedule are used, and data.tokenizer, which may name a
   tokenizer JSON; the other data, checkpoint and log keys and train.threads
   are ignored; train.steps sets the schedule's length). With init != NULL the model
   starts from a copy of init's weights and tokenizer (its config must then
   equal the `model` section, which may be omitted); else from train.seed. */
MMREC_C_API mmrec_status mmrec_trainer_create(const char* config_json, const mmrec_model* init,
                                              mmrec_trainer** out);
MMREC_C_API void mmrec_trainer_free(mmrec_trainer* trainer);
/* The text to train on (copied and tokenized): it must hold more than
   train.seq_len tokens. Windows of seq_len + 1 tokens are drawn from it by
   an RNG seeded from train.seed. */
MMREC_C_API mmrec_status mmrec_trainer_set_text(mmrec_trainer* trainer, const char* text, size_t len);
/* One optimizer step (train.grad_accum micro-batches of train.batch_size
   windows, clipping, AdamW); out may be NULL. */
MMREC_C_API mmrec_status mmrec_trainer_step(mmrec_trainer* trainer, mmrec_step_result* out);
/* A new model holding a copy of the current weights (for generation or
   mmrec_model_save); training on does not change it. */
MMREC_C_API mmrec_status mmrec_trainer_model(const mmrec_trainer* trainer, mmrec_model** out);

#ifdef __cplusplus
}
#endif

#endif /* MMREC_MMREC_C_H */
