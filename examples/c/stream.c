/* Streams text generated from a checkpoint, through the C API.
 *
 *   stream MODEL.safetensors PROMPT TOKENS [TEMPERATURE [TOP_K [SEED]]]
 *
 * Prints the prompt, then each generated token's bytes as soon as it is
 * sampled. Exit status: 0 done, 1 a failure, 2 bad arguments. */
#include <mmrec/mmrec_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char* what) {
  fprintf(stderr, "stream: %s: %s\n", what, mmrec_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    fprintf(stderr, "usage: stream MODEL.safetensors PROMPT TOKENS [TEMPERATURE [TOP_K [SEED]]]\n");
    return 2;
  }
  const char* prompt = argv[2];
  const long tokens = strtol(argv[3], NULL, 10);
  const float temperature = argc > 4 ? strtof(argv[4], NULL) : 0.8f;
  const int top_k = argc > 5 ? atoi(argv[5]) : 40;
  const unsigned long long seed = argc > 6 ? strtoull(argv[6], NULL, 10) : 1;

  mmrec_model* model = NULL;
  if (mmrec_model_load(argv[1], &model) != MMREC_OK) return fail("loading the model");
  mmrec_state* state = NULL;
  if (mmrec_state_create(model, &state) != MMREC_OK) return fail("creating a state");
  mmrec_state_seed(state, seed);

  /* The prompt goes in one call. */
  size_t n = 0, len = strlen(prompt);
  int32_t* ids = malloc((len + 1) * sizeof *ids);
  if (ids == NULL) return 1;
  if (mmrec_tokenize(model, prompt, len, ids, len + 1, &n) != MMREC_OK) return fail("tokenizing the prompt");
  if (n == 0) {
    fprintf(stderr, "stream: the prompt is empty\n");
    return 2;
  }
  if (mmrec_state_feed(state, ids, n) != MMREC_OK) return fail("feeding the prompt");
  free(ids);
  fputs(prompt, stdout);

  /* Then one token per call: sample, print its bytes, feed it back. */
  for (long i = 0; i < tokens; ++i) {
    int32_t next;
    char bytes[256];
    size_t nbytes = 0;
    if (mmrec_state_sample(state, temperature, top_k, &next) != MMREC_OK) return fail("sampling");
    if (mmrec_detokenize(model, &next, 1, bytes, sizeof bytes, &nbytes) != MMREC_OK) return fail("detokenizing");
    fwrite(bytes, 1, nbytes, stdout);
    fflush(stdout);
    if (mmrec_state_feed(state, &next, 1) != MMREC_OK) return fail("feeding a token");
  }
  putchar('\n');
  mmrec_state_free(state);
  mmrec_model_free(model);
  return 0;
}
