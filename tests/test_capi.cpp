// The C API (include/mmrec/mmrec_c.h) through the shared library: every entry
// point, bad handles and arguments (status and message, no crash), states
// copied and reset, training on in-memory text, two models in two threads.
// Only the C header is used: this is what a C host sees.
#include <doctest/doctest.h>
#include <mmrec/mmrec_c.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* kTinyModel = R"({"vocab_size": 256, "dim": 32, "layers": 2, "heads": 2, "memory_slots": 8,
                             "hds_levels": 2, "chunk_size": 8})";

std::string tmp(const std::string& name) { return "/tmp/mmrec_test_capi_" + std::to_string(::getpid()) + "_" + name; }

// The status, and the message when it failed.
#define CHECK_OK(call)                                               \
  do {                                                               \
    const mmrec_status st_ = (call);                                 \
    const std::string msg_ = mmrec_last_error();                     \
    INFO(#call << ": " << msg_);                                     \
    REQUIRE(st_ == MMREC_OK);                                        \
  } while (0)

// A call that must fail with `status` and a message containing `part`.
#define CHECK_FAILS(call, status, part)                                       \
  do {                                                                        \
    const mmrec_status st_ = (call);                                          \
    const std::string msg_ = mmrec_last_error();                              \
    INFO(#call << " -> " << mmrec_status_name(st_) << ": " << msg_);          \
    CHECK(st_ == (status));                                                   \
    CHECK(msg_.find(part) != std::string::npos);                              \
  } while (0)

mmrec_model* tiny_model(uint64_t seed = 7) {
  mmrec_model* m = nullptr;
  CHECK_OK(mmrec_model_create(kTinyModel, seed, &m));
  return m;
}

std::vector<float> logits_of(const mmrec_state* s, int32_t V) {
  std::vector<float> v(static_cast<size_t>(V));
  CHECK_OK(mmrec_state_logits(s, v.data(), v.size()));
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

// Feeds `prompt` then generates n tokens greedily (temperature 0).
std::vector<int32_t> greedy(const mmrec_model* m, const std::string& prompt, int n) {
  mmrec_state* s = nullptr;
  CHECK_OK(mmrec_state_create(m, &s));
  std::vector<int32_t> ids(prompt.size() + 8);
  size_t k = 0;
  CHECK_OK(mmrec_tokenize(m, prompt.data(), prompt.size(), ids.data(), ids.size(), &k));
  CHECK_OK(mmrec_state_feed(s, ids.data(), k));
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t next = -1;
    CHECK_OK(mmrec_state_sample(s, 0.0f, 0, &next));
    out.push_back(next);
    CHECK_OK(mmrec_state_feed(s, &next, 1));
  }
  mmrec_state_free(s);
  return out;
}

}  // namespace

TEST_CASE("capi: version and status names") {
  CHECK(std::string(mmrec_version()) == std::to_string(MMREC_VERSION_MAJOR) + "." +
                                            std::to_string(MMREC_VERSION_MINOR) + "." +
                                            std::to_string(MMREC_VERSION_PATCH));
  CHECK(std::string(mmrec_status_name(MMREC_OK)) == "MMREC_OK");
  CHECK(std::string(mmrec_status_name(MMREC_ERR_BUFFER)) == "MMREC_ERR_BUFFER");
  CHECK(std::string(mmrec_status_name(static_cast<mmrec_status>(99))) == "unknown status");
  CHECK_OK(mmrec_set_num_threads(0));
  CHECK_FAILS(mmrec_set_num_threads(-1), MMREC_ERR_ARGUMENT, "mmrec_set_num_threads: threads must be >= 0");
}

TEST_CASE("capi: create, describe, save and load a model (f32 and bf16)") {
  mmrec_model* m = tiny_model();
  int32_t V = 0;
  int64_t n = 0;
  mmrec_dtype dt = MMREC_DTYPE_I8;
  CHECK_OK(mmrec_model_vocab_size(m, &V));
  CHECK(V == 256);
  CHECK_OK(mmrec_model_num_parameters(m, &n));
  CHECK(n > 10000);
  CHECK_OK(mmrec_model_dtype(m, &dt));
  CHECK(dt == MMREC_DTYPE_F32);

  // The config: too small a buffer reports the size needed.
  size_t len = 0;
  char small[4];
  CHECK_FAILS(mmrec_model_config_json(m, small, sizeof small, &len), MMREC_ERR_BUFFER, "bytes");
  REQUIRE(len > 4);
  std::vector<char> buf(len + 1);
  CHECK_OK(mmrec_model_config_json(m, buf.data(), buf.size(), &len));
  const std::string cfg(buf.data());
  CHECK(cfg.size() == len);
  CHECK(cfg.find("\"dim\":32") != std::string::npos);

  const std::vector<int32_t> prompt = {84, 104, 101, 32, 99, 97, 116};
  mmrec_state* s = nullptr;
  CHECK_OK(mmrec_state_create(m, &s));
  CHECK_OK(mmrec_state_feed(s, prompt.data(), prompt.size()));
  const std::vector<float> ref = logits_of(s, V);
  mmrec_state_free(s);

  for (mmrec_dtype d : {MMREC_DTYPE_F32, MMREC_DTYPE_BF16}) {
    CAPTURE(d);
    const std::string path = tmp("model.safetensors");
    CHECK_OK(mmrec_model_save(m, path.c_str(), d));
    mmrec_model* l = nullptr;
    CHECK_OK(mmrec_model_load(path.c_str(), &l));
    CHECK_OK(mmrec_model_dtype(l, &dt));
    CHECK(dt == d);
    CHECK_OK(mmrec_state_create(l, &s));
    CHECK_OK(mmrec_state_feed(s, prompt.data(), prompt.size()));
    const double diff = max_abs_diff(logits_of(s, V), ref);
    CHECK(diff <= (d == MMREC_DTYPE_F32 ? 0.0 : 0.1));
    mmrec_state_free(s);
    mmrec_model_free(l);
    std::remove(path.c_str());
  }
  CHECK_FAILS(mmrec_model_save(m, tmp("i8.safetensors").c_str(), MMREC_DTYPE_I8), MMREC_ERR_UNSUPPORTED, "i8");
  CHECK_FAILS(mmrec_model_save(m, tmp("x.safetensors").c_str(), static_cast<mmrec_dtype>(42)), MMREC_ERR_ARGUMENT,
              "unknown dtype 42");
  CHECK_FAILS(mmrec_model_save(m, "/nonexistent-dir/m.safetensors", MMREC_DTYPE_F32), MMREC_ERR_FILE,
              "/nonexistent-dir/m.safetensors");
  mmrec_model_free(m);
}

TEST_CASE("capi: loading bad files and configs fails with the file or key named") {
  mmrec_model* m = nullptr;
  CHECK_FAILS(mmrec_model_load("/nonexistent/model.safetensors", &m), MMREC_ERR_FILE, "/nonexistent/model.safetensors");
  const std::string junk = tmp("junk.safetensors");
  std::ofstream(junk) << "this is not a safetensors file";
  CHECK_FAILS(mmrec_model_load(junk.c_str(), &m), MMREC_ERR_FILE, "mmrec_model_load: ");
  std::remove(junk.c_str());
  CHECK(m == nullptr);  // outputs are untouched on failure

  CHECK_FAILS(mmrec_model_create("{not json", 1, &m), MMREC_ERR_CONFIG, "not valid JSON");
  CHECK_FAILS(mmrec_model_create(R"({"dim": 30, "heads": 4})", 1, &m), MMREC_ERR_CONFIG, "model.heads");
  CHECK_FAILS(mmrec_model_create(R"({"dimm": 30})", 1, &m), MMREC_ERR_CONFIG, "dimm");
  CHECK_FAILS(mmrec_model_create(R"({"vocab_size": 100})", 1, &m), MMREC_ERR_CONFIG, "vocab_size");
  CHECK(m == nullptr);
}

TEST_CASE("capi: tokenize and detokenize round-trip any bytes") {
  mmrec_model* m = tiny_model();
  const std::string text("caf\xc3\xa9 \x00\xff end", 11);
  std::vector<int32_t> ids(64);
  size_t n = 0;
  CHECK_OK(mmrec_tokenize(m, text.data(), text.size(), ids.data(), ids.size(), &n));
  CHECK(n == text.size());  // byte-level
  CHECK(ids[6] == 0);
  CHECK(ids[7] == 255);
  std::vector<char> out(64);
  size_t len = 0;
  CHECK_OK(mmrec_detokenize(m, ids.data(), n, out.data(), out.size(), &len));
  CHECK(std::string(out.data(), len) == text);

  // Buffers too small say how much is needed; empty input is fine.
  CHECK_FAILS(mmrec_tokenize(m, text.data(), text.size(), ids.data(), 3, &n), MMREC_ERR_BUFFER, "3 ids");
  CHECK(n == text.size());
  CHECK_FAILS(mmrec_tokenize(m, text.data(), text.size(), nullptr, 0, &n), MMREC_ERR_BUFFER, "needed");
  CHECK(n == text.size());
  CHECK_FAILS(mmrec_detokenize(m, ids.data(), text.size(), out.data(), 2, &len), MMREC_ERR_BUFFER, "needed");
  CHECK(len == text.size());
  CHECK_OK(mmrec_tokenize(m, "", 0, nullptr, 0, &n));
  CHECK(n == 0);

  const int32_t bad[2] = {65, 256};
  CHECK_FAILS(mmrec_detokenize(m, bad, 2, out.data(), out.size(), &len), MMREC_ERR_ARGUMENT, "token 256 at position 1");
  CHECK_FAILS(mmrec_tokenize(m, nullptr, 5, ids.data(), ids.size(), &n), MMREC_ERR_ARGUMENT, "text is NULL");
  CHECK_FAILS(mmrec_tokenize(m, "ab", 2, ids.data(), ids.size(), nullptr), MMREC_ERR_ARGUMENT, "out_len is NULL");
  mmrec_model_free(m);
}

TEST_CASE("capi: feeding, logits and sampling") {
  mmrec_model* m = tiny_model();
  const int32_t V = 256;
  const std::vector<int32_t> prompt = {72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100};
  mmrec_state *whole = nullptr, *byone = nullptr;
  CHECK_OK(mmrec_state_create(m, &whole));
  CHECK_OK(mmrec_state_create(m, &byone));
  CHECK_OK(mmrec_state_feed(whole, prompt.data(), prompt.size()));
  for (int32_t t : prompt) CHECK_OK(mmrec_state_feed(byone, &t, 1));
  int64_t pos = 0;
  CHECK_OK(mmrec_state_position(byone, &pos));
  CHECK(pos == static_cast<int64_t>(prompt.size()));
  // One call or one token at a time (through the packed weights): the same logits.
  const std::vector<float> a = logits_of(whole, V), b = logits_of(byone, V);
  CHECK(max_abs_diff(a, b) < 1e-4);

  // Greedy is the argmax; top_k 1 is greedy at any temperature.
  int32_t g = -1, k1 = -1;
  CHECK_OK(mmrec_state_sample(whole, 0.0f, 0, &g));
  CHECK(g == std::max_element(a.begin(), a.end()) - a.begin());
  CHECK_OK(mmrec_state_sample(whole, 1.5f, 1, &k1));
  CHECK(k1 == g);

  // Same seed, same draws; the state's sampler advances.
  CHECK_OK(mmrec_state_seed(whole, 99));
  CHECK_OK(mmrec_state_seed(byone, 99));
  std::vector<int32_t> da, db;
  for (int i = 0; i < 20; ++i) {
    int32_t x, y;
    CHECK_OK(mmrec_state_sample(whole, 1.0f, 40, &x));
    CHECK_OK(mmrec_state_sample(byone, 1.0f, 40, &y));
    da.push_back(x), db.push_back(y);
  }
  CHECK(da == db);
  CHECK(std::count(da.begin(), da.end(), da[0]) < 20);  // temperature 1 over 40 tokens does vary

  // Bad arguments change nothing.
  const int32_t bad[3] = {1, 2, 300};
  CHECK_FAILS(mmrec_state_feed(whole, bad, 3), MMREC_ERR_ARGUMENT, "token 300 at position 2");
  CHECK_FAILS(mmrec_state_feed(whole, bad, 0), MMREC_ERR_ARGUMENT, "n must be >= 1");
  CHECK_FAILS(mmrec_state_feed(whole, nullptr, 1), MMREC_ERR_ARGUMENT, "tokens is NULL");
  CHECK_OK(mmrec_state_position(whole, &pos));
  CHECK(pos == static_cast<int64_t>(prompt.size()));
  CHECK(max_abs_diff(logits_of(whole, V), a) == 0.0);
  int32_t x = -7;
  CHECK_FAILS(mmrec_state_sample(whole, -1.0f, 0, &x), MMREC_ERR_ARGUMENT, "temperature");
  CHECK_FAILS(mmrec_state_sample(whole, NAN, 0, &x), MMREC_ERR_ARGUMENT, "temperature");
  CHECK_FAILS(mmrec_state_sample(whole, 1.0f, -2, &x), MMREC_ERR_ARGUMENT, "top_k");
  CHECK_FAILS(mmrec_state_sample(whole, 1.0f, 0, nullptr), MMREC_ERR_ARGUMENT, "out is NULL");
  CHECK(x == -7);
  std::vector<float> few(10);
  CHECK_FAILS(mmrec_state_logits(whole, few.data(), few.size()), MMREC_ERR_BUFFER, "256 (vocab_size)");

  // Reset: as new (sampling needs a token first).
  CHECK_OK(mmrec_state_reset(whole));
  CHECK_OK(mmrec_state_position(whole, &pos));
  CHECK(pos == 0);
  CHECK_FAILS(mmrec_state_sample(whole, 0.0f, 0, &x), MMREC_ERR_STATE, "no token has been fed");
  CHECK_FAILS(mmrec_state_logits(whole, few.data(), few.size()), MMREC_ERR_STATE, "no token");
  CHECK_OK(mmrec_state_feed(whole, prompt.data(), prompt.size()));
  CHECK(max_abs_diff(logits_of(whole, V), a) == 0.0);
  mmrec_state_free(whole);
  mmrec_state_free(byone);
  mmrec_model_free(m);
}

TEST_CASE("capi: a copied state continues exactly like the original; states outlive their model") {
  mmrec_model* m = tiny_model(3);
  // Past several chunks (chunk_size 8) so that the memory slots are in use.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(97 + (i * 7) % 26);
  mmrec_state* s = nullptr;
  CHECK_OK(mmrec_state_create(m, &s));
  CHECK_OK(mmrec_state_feed(s, prompt.data(), prompt.size()));
  CHECK_OK(mmrec_state_seed(s, 5));
  mmrec_state* c = nullptr;
  CHECK_OK(mmrec_state_copy(s, &c));
  mmrec_model_free(m);  // the states keep it alive

  // The original goes on a different path first: the copy must not see it.
  mmrec_state* d = nullptr;
  CHECK_OK(mmrec_state_copy(s, &d));
  const int32_t detour[4] = {1, 2, 3, 4};
  CHECK_OK(mmrec_state_feed(d, detour, 4));
  mmrec_state_free(d);

  std::vector<int32_t> ts, tc;
  for (int i = 0; i < 12; ++i) {
    int32_t a, b;
    CHECK_OK(mmrec_state_sample(s, 0.9f, 20, &a));
    CHECK_OK(mmrec_state_sample(c, 0.9f, 20, &b));
    ts.push_back(a), tc.push_back(b);
    CHECK_OK(mmrec_state_feed(s, &a, 1));
    CHECK_OK(mmrec_state_feed(c, &b, 1));
  }
  CHECK(ts == tc);
  CHECK(max_abs_diff(logits_of(s, 256), logits_of(c, 256)) == 0.0);
  mmrec_state_free(s);
  mmrec_state_free(c);
}

TEST_CASE("capi: NULL and foreign handles are refused by every entry point") {
  mmrec_model* m = tiny_model();
  mmrec_state* s = nullptr;
  CHECK_OK(mmrec_state_create(m, &s));
  // A handle of another kind, as a C caller casting by mistake would pass it.
  const mmrec_model* fm = reinterpret_cast<const mmrec_model*>(s);
  mmrec_state* fs = reinterpret_cast<mmrec_state*>(m);
  mmrec_trainer* ft = reinterpret_cast<mmrec_trainer*>(m);
  int32_t i32;
  int64_t i64;
  mmrec_dtype dt;
  size_t len;
  char buf[8];
  float f[4];
  const int32_t tok = 1;
  mmrec_step_result r;
  for (const mmrec_model* h : {static_cast<const mmrec_model*>(nullptr), fm}) {
    const char* what = h ? "not a model handle" : "the model handle is NULL";
    CHECK_FAILS(mmrec_model_save(h, "/tmp/x", MMREC_DTYPE_F32), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_model_vocab_size(h, &i32), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_model_num_parameters(h, &i64), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_model_dtype(h, &dt), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_model_config_json(h, buf, 8, &len), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_tokenize(h, "a", 1, &i32, 1, &len), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_detokenize(h, &tok, 1, buf, 8, &len), MMREC_ERR_HANDLE, what);
    mmrec_state* out = nullptr;
    CHECK_FAILS(mmrec_state_create(h, &out), MMREC_ERR_HANDLE, what);
    CHECK(out == nullptr);
  }
  for (mmrec_state* h : {static_cast<mmrec_state*>(nullptr), fs}) {
    const char* what = h ? "not a state handle" : "the state handle is NULL";
    CHECK_FAILS(mmrec_state_feed(h, &tok, 1), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_state_logits(h, f, 4), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_state_sample(h, 1.0f, 0, &i32), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_state_seed(h, 1), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_state_reset(h), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_state_position(h, &i64), MMREC_ERR_HANDLE, what);
    mmrec_state* out = nullptr;
    CHECK_FAILS(mmrec_state_copy(h, &out), MMREC_ERR_HANDLE, what);
  }
  for (mmrec_trainer* h : {static_cast<mmrec_trainer*>(nullptr), ft}) {
    const char* what = h ? "not a trainer handle" : "the trainer handle is NULL";
    CHECK_FAILS(mmrec_trainer_set_text(h, "abc", 3), MMREC_ERR_HANDLE, what);
    CHECK_FAILS(mmrec_trainer_step(h, &r), MMREC_ERR_HANDLE, what);
    mmrec_model* out = nullptr;
    CHECK_FAILS(mmrec_trainer_model(h, &out), MMREC_ERR_HANDLE, what);
  }
  mmrec_trainer* t = nullptr;
  CHECK_FAILS(mmrec_trainer_create("{}", fm, &t), MMREC_ERR_HANDLE, "not a model handle");
  // NULL outputs, and freeing NULL or a foreign handle, are harmless.
  CHECK_FAILS(mmrec_model_load("x", nullptr), MMREC_ERR_ARGUMENT, "out is NULL");
  CHECK_FAILS(mmrec_model_create(kTinyModel, 1, nullptr), MMREC_ERR_ARGUMENT, "out is NULL");
  CHECK_FAILS(mmrec_state_create(m, nullptr), MMREC_ERR_ARGUMENT, "out is NULL");
  CHECK_FAILS(mmrec_trainer_create("{}", nullptr, nullptr), MMREC_ERR_ARGUMENT, "out is NULL");
  mmrec_model_free(nullptr);
  mmrec_state_free(nullptr);
  mmrec_trainer_free(nullptr);
  mmrec_model_free(reinterpret_cast<mmrec_model*>(s));  // not a model: left alone
  CHECK_OK(mmrec_state_position(s, &i64));
  mmrec_state_free(s);
  mmrec_model_free(m);
}

TEST_CASE("capi: training on in-memory text lowers the loss and is deterministic") {
  const std::string cfg = R"({"model": )" + std::string(kTinyModel) + R"(,
      "train": {"steps": 150, "batch_size": 8, "seq_len": 32, "lr": 0.01, "seed": 3},
      "schedule": {"kind": "cosine", "warmup_steps": 4}})";
  std::string text;
  for (int i = 0; i < 60; ++i) text += "the cat sat on the mat. ";
  std::vector<double> losses[2];
  for (int run = 0; run < 2; ++run) {
    mmrec_trainer* t = nullptr;
    CHECK_OK(mmrec_trainer_create(cfg.c_str(), nullptr, &t));
    mmrec_step_result r;
    CHECK_FAILS(mmrec_trainer_step(t, &r), MMREC_ERR_STATE, "mmrec_trainer_set_text");
    CHECK_FAILS(mmrec_trainer_set_text(t, "too short", 9), MMREC_ERR_ARGUMENT, "the text has 9 tokens");
    CHECK_FAILS(mmrec_trainer_set_text(t, nullptr, 9), MMREC_ERR_ARGUMENT, "text is NULL");
    CHECK_OK(mmrec_trainer_set_text(t, text.data(), text.size()));
    for (int s = 0; s < 150; ++s) {
      CHECK_OK(mmrec_trainer_step(t, &r));
      CHECK(r.step == s + 1);
      CHECK(r.grad_norm > 0);
      losses[run].push_back(r.loss);
    }
    CHECK(r.lr < 0.01 * 0.01);  // the cosine schedule ran over train.steps
    if (run == 0) {
      // The trained model generates the text it saw.
      mmrec_model* m = nullptr;
      CHECK_OK(mmrec_trainer_model(t, &m));
      CHECK_OK(mmrec_trainer_step(t, nullptr));  // training on does not change m
      const std::vector<int32_t> g = greedy(m, "the cat sat on the", 12);
      std::vector<char> out(64);
      size_t len = 0;
      CHECK_OK(mmrec_detokenize(m, g.data(), g.size(), out.data(), out.size(), &len));
      CHECK(std::string(out.data(), len) == " mat. the ca");
      mmrec_model* m2 = nullptr;
      CHECK_OK(mmrec_trainer_model(t, &m2));
      CHECK(greedy(m, "the cat sat on the", 12) == g);
      mmrec_model_free(m2);
      mmrec_model_free(m);
    }
    mmrec_trainer_free(t);
  }
  CHECK(losses[0] == losses[1]);
  CHECK(losses[0].front() > 5.0);  // ln 256 = 5.55 at the start
  CHECK(losses[0].back() < 1.5);
}

TEST_CASE("capi: a trainer starts from a model's weights and tokenizer; config errors name the key") {
  // A BPE tokenizer (one merge: "t" "h" -> 256) given to the trainer by path.
  const std::string tok = tmp("tok.json");
  std::ofstream(tok) << R"({"type": "mmrec-bpe", "version": 1, "pretokenizer": "mmrec-v1", "merges": [[116, 104]]})";
  const std::string model = R"({"vocab_size": 257, "dim": 32, "layers": 1, "heads": 2, "memory_slots": 4,
                                "hds_levels": 1, "chunk_size": 8})";
  const std::string cfg = R"({"model": )" + model + R"(, "data": {"tokenizer": ")" + tok + R"("},
                             "train": {"steps": 5, "batch_size": 2, "seq_len": 8}})";
  mmrec_trainer* t = nullptr;
  CHECK_OK(mmrec_trainer_create(cfg.c_str(), nullptr, &t));
  const std::string text = "the thin thread then the theme, the theory, the thesis. ";
  CHECK_OK(mmrec_trainer_set_text(t, text.data(), text.size()));
  CHECK_OK(mmrec_trainer_step(t, nullptr));
  mmrec_model* m = nullptr;
  CHECK_OK(mmrec_trainer_model(t, &m));
  mmrec_trainer_free(t);

  // The tokenizer travels with the checkpoint.
  const std::string path = tmp("bpe.safetensors");
  CHECK_OK(mmrec_model_save(m, path.c_str(), MMREC_DTYPE_F32));
  mmrec_model* l = nullptr;
  CHECK_OK(mmrec_model_load(path.c_str(), &l));
  std::remove(path.c_str());
  int32_t ids[8];
  size_t n = 0;
  CHECK_OK(mmrec_tokenize(l, "the", 3, ids, 8, &n));
  REQUIRE(n == 2);
  CHECK(ids[0] == 256);
  CHECK(ids[1] == 101);

  // Fine-tuning l: the model section may be left out, or must match.
  mmrec_trainer* f = nullptr;
  CHECK_OK(mmrec_trainer_create(R"({"train": {"steps": 3, "batch_size": 2, "seq_len": 8}})", l, &f));
  CHECK_OK(mmrec_trainer_set_text(f, text.data(), text.size()));
  mmrec_step_result r0, r1;
  CHECK_OK(mmrec_trainer_step(f, &r0));
  mmrec_trainer_free(f);
  // From m (the same weights): the same first loss.
  CHECK_OK(mmrec_trainer_create((R"({"model": )" + model + R"(, "train": {"steps": 3, "batch_size": 2, "seq_len": 8}})").c_str(), m, &f));
  CHECK_OK(mmrec_trainer_set_text(f, text.data(), text.size()));
  CHECK_OK(mmrec_trainer_step(f, &r1));
  CHECK(r0.loss == r1.loss);
  mmrec_trainer_free(f);

  f = nullptr;
  CHECK_FAILS(mmrec_trainer_create(R"({"model": {"dim": 64}})", l, &f), MMREC_ERR_CONFIG,
              "differs from the initial model's config");
  CHECK_FAILS(mmrec_trainer_create(R"({"train": {"lr": "x"}})", nullptr, &f), MMREC_ERR_CONFIG, "train.lr");
  CHECK_FAILS(mmrec_trainer_create(R"({"data": {"tokenizer": "/nonexistent/tok.json"}})", nullptr, &f),
              MMREC_ERR_CONFIG, "data.tokenizer");
  CHECK_FAILS(mmrec_trainer_create("[1, 2]", nullptr, &f), MMREC_ERR_ARGUMENT, "JSON object");
  CHECK(f == nullptr);
  mmrec_model_free(l);
  mmrec_model_free(m);
  std::remove(tok.c_str());
}

TEST_CASE("capi: two models in two threads, a trainer beside them; errors stay per thread") {
  const std::string prompt = "Once upon a time";
  mmrec_model* a = tiny_model(11);
  mmrec_model* b = tiny_model(12);
  const std::vector<int32_t> ref_a = greedy(a, prompt, 40), ref_b = greedy(b, prompt, 40);
  CHECK(ref_a != ref_b);

  std::vector<int32_t> got_a, got_b;
  double train_loss = 0;
  std::string err_in_thread;
  mmrec_model* bad = nullptr;
  std::thread ta([&] {
    for (int i = 0; i < 3; ++i) got_a = greedy(a, prompt, 40);
  });
  std::thread tb([&] {
    mmrec_model_load("/nonexistent/b.safetensors", &bad);
    err_in_thread = mmrec_last_error();
    for (int i = 0; i < 3; ++i) got_b = greedy(b, prompt, 40);
  });
  std::thread tt([&] {
    mmrec_trainer* t = nullptr;
    const std::string cfg = R"({"model": )" + std::string(kTinyModel) + R"(, "train": {"steps": 5, "batch_size": 2, "seq_len": 16}})";
    if (mmrec_trainer_create(cfg.c_str(), nullptr, &t) != MMREC_OK) return;
    std::string text(400, 'x');
    mmrec_trainer_set_text(t, text.data(), text.size());
    mmrec_step_result r{};
    for (int i = 0; i < 5; ++i) mmrec_trainer_step(t, &r);
    train_loss = r.loss;
    mmrec_trainer_free(t);
  });
  mmrec_model* m = nullptr;
  CHECK_FAILS(mmrec_model_create("{", 1, &m), MMREC_ERR_CONFIG, "not valid JSON");
  ta.join();
  tb.join();
  tt.join();
  CHECK(got_a == ref_a);
  CHECK(got_b == ref_b);
  CHECK(train_loss > 0);
  CHECK(bad == nullptr);
  CHECK(err_in_thread.find("/nonexistent/b.safetensors") != std::string::npos);
  // This thread's message is its own failure's, not the other thread's.
  CHECK(std::string(mmrec_last_error()).find("not valid JSON") != std::string::npos);
  mmrec_model_free(a);
  mmrec_model_free(b);
}
