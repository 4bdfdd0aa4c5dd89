// Hostile and damaged inputs: every loader given crafted files (made here,
// a few hundred bytes each) fails with one clear Error, quickly and without
// allocating what the file only claims; allocation failures name their
// tensor; NaN is never hidden by the bounded exp.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "models/safetensors.h"
#include "ops/activation.h"
#include "ops/softmax.h"
#include "tensor/allocator.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/fileio.h"
#include "train/memory_estimate.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

// Huge allocations must fail with an Error under AddressSanitizer too.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

using namespace mmrec;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string tmp(const std::string& name) { return "/tmp/mmrec_test_hostile_" + std::to_string(::getpid()) + "_" + name; }

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A safetensors file with this config metadata and these tensor entries.
std::string st_with_config(const json& config, const std::string& tensors = "", const std::string& data = "") {
  json meta = {{"config", config.dump()}};
  std::string h = "{\"__metadata__\":" + meta.dump() + (tensors.empty() ? "" : "," + tensors) + "}";
  return le64(h.size()) + h + data;
}

// A training state file: magic, header length, header, data at 64, a valid hash.
std::string train_state_file(const std::string& header, uint64_t hlen, const std::string& data) {
  std::string b = std::string("MMRECTS1", 8) + le64(hlen) + header;
  b.resize(((b.size() + 63) / 64) * 64, '\0');
  b += data;
  const uint64_t h = hash64(b.data(), b.size());
  return b + le64(h);
}

}  // namespace

TEST_CASE("tokenizer: self-chaining merges and too many merges are refused before any token is built") {
  // Each merge doubles a token: (97,97) -> 2 bytes, (256,256) -> 4, ... 2^40 bytes at merge 39.
  json merges = json::array({{97, 97}});
  for (int i = 0; i < 40; ++i) merges.push_back({256 + i, 256 + i});
  const std::string path = tmp("chain.json");
  put(path, json{{"type", "mmrec-bpe"}, {"pretokenizer", "mmrec-v1"}, {"merges", merges}}.dump());
  const size_t peak0 = alloc::stats().peak_bytes;
  std::string err;
  const double s = seconds_of([&] { err = error_of([&] { Tokenizer::load(path); }); });
  CHECK(err == path + ": tokenizer: merge 6 (261, 261) makes a token of 128 bytes (the limit is 64: merges stay "
                      "within pretokenized chunks)");
  CHECK(s < 1.0);
  CHECK(alloc::stats().peak_bytes == peak0);
  // 64-byte tokens are fine (the longest chunk the pretokenizer makes).
  json ok = json::array({{97, 97}});
  for (int i = 0; i < 5; ++i) ok.push_back({256 + i, 256 + i});
  put(path, json{{"type", "mmrec-bpe"}, {"pretokenizer", "mmrec-v1"}, {"merges", ok}}.dump());
  const Tokenizer t = Tokenizer::load(path);
  CHECK(t.token_bytes(261) == std::string(64, 'a'));
  CHECK(t.encode(std::string(64, 'a')) == std::vector<int32_t>{261});
  // Ids out of int32 range, floats and non-arrays are errors, never truncated casts.
  put(path, R"({"type":"mmrec-bpe","pretokenizer":"mmrec-v1","merges":[[4294967393, 97]]})");
  CHECK(has(error_of([&] { Tokenizer::load(path); }), "refers to an id outside"));
  put(path, R"({"type":"mmrec-bpe","pretokenizer":"mmrec-v1","merges":[[97.5, 97]]})");
  CHECK(has(error_of([&] { Tokenizer::load(path); }), "must be a pair of ids"));
  put(path, R"({"type":"mmrec-bpe","pretokenizer":"mmrec-v1","merges":{"a":[97,97]}})");
  CHECK(has(error_of([&] { Tokenizer::load(path); }), "\"merges\" must be an array"));
  put(path, R"({"type": 5, "merges": []})");
  CHECK(error_of([&] { Tokenizer::load(path); }) ==
        path + ": not a tokenizer written by mmrec-tokenize (\"type\" is not \"mmrec-bpe\")");
  put(path, R"({"type": "mmrec-bpe", "pretokenizer": [1], "merges": []})");
  CHECK(error_of([&] { Tokenizer::load(path); }) == path + ": unknown pretokenizer \"\"");
  std::vector<std::pair<int32_t, int32_t>> many(static_cast<size_t>(Tokenizer::kMaxVocab - 255), {97, 98});
  CHECK(error_of([&] { Tokenizer::from_merges(many); }) == "tokenizer: 1048321 merges (the limit is 1048320)");
  std::remove(path.c_str());
}

TEST_CASE("model config: upper bounds keep every size product far from overflow") {
  auto err = [](const json& j) { return error_of([&] { ModelConfig::from_json(j); }); };
  CHECK(err({{"dim", int64_t{1} << 62}}) == "model.dim: must be <= 65536, got 4611686018427387904");
  CHECK(err({{"vocab_size", int64_t{1} << 40}}) == "model.vocab_size: must be <= 16777216, got 1099511627776");
  CHECK(err({{"layers", 100000}}) == "model.layers: must be <= 4096, got 100000");
  CHECK(err({{"ffn_dim", int64_t{1} << 30}}) == "model.ffn_dim: must be <= 1048576, got 1073741824");
  CHECK(err({{"memory_slots", int64_t{1} << 20}}) == "model.memory_slots: must be <= 65536, got 1048576");
  CHECK(err({{"chunk_size", int64_t{1} << 40}}) == "model.chunk_size: must be <= 1048576, got 1099511627776");
  CHECK(err({{"norm_eps", 1e300}}) == "model.norm_eps: must be < 1, got 1e+300");
  CHECK(err({{"ignore_index", 256}}) ==
        "model.ignore_index: 256 is neither negative (none) nor an id below model.vocab_size 256");
  // The largest config's parameter count is computed without overflow.
  const ModelConfig big = ModelConfig::from_json(
      {{"vocab_size", ModelConfig::kMaxVocab}, {"dim", ModelConfig::kMaxDim}, {"layers", ModelConfig::kMaxLayers},
       {"ffn_dim", ModelConfig::kMaxFfn}, {"tie_embeddings", false}});
  CHECK(Model::parameter_count(big) > 0);
  const ModelConfig small = ModelConfig::from_json({{"dim", 8}, {"layers", 3}, {"heads", 2}, {"ffn_dim", 12},
                                                    {"mdi_dim", 3}, {"vocab_size", 19}, {"tie_embeddings", false}});
  CHECK(Model::parameter_count(small) == Model(small).num_parameters());
  CHECK(Model::parameter_count(ModelConfig{}) == Model(ModelConfig{}).num_parameters());
}

TEST_CASE("load_model: a tiny file claiming a huge model is refused before the model is built") {
  const std::string path = tmp("huge.safetensors");
  // 244 bytes that used to cost 45 s and 3.9 GB: a big config and no tensors.
  put(path, st_with_config({{"dim", 65536}, {"layers", 64}, {"heads", 1}, {"vocab_size", 256}}));
  const size_t peak0 = alloc::stats().peak_bytes;
  std::string err;
  const double s = seconds_of([&] { err = error_of([&] { load_model(path); }); });
  CHECK(err == "load_model: '" + path + "': its tensors hold 0 values, but its config (vocab_size 256, dim 65536, "
                                        "layers 64, ffn_dim 262144) needs 4123250458624 parameters");
  CHECK(s < 1.0);
  CHECK(alloc::stats().peak_bytes == peak0);
  // Out of bounds: the config's own error, naming the file.
  put(path, st_with_config({{"dim", int64_t{1} << 40}}));
  CHECK(error_of([&] { load_model(path); }) ==
        "load_model: '" + path + "': model.dim: must be <= 65536, got 1099511627776");
  // A shape whose strides overflow although it holds no element.
  put(path, st_with_config({{"dim", 8}},
                           R"("t":{"dtype":"F32","shape":[0, 4611686018427387904, 4],"data_offsets":[0,0]})"));
  CHECK(has(error_of([&] { read_safetensors(path); }), "tensor 't': shape [0,4611686018427387904,4] has too many elements"));
  CHECK(has(error_of([&] { Tensor::empty({0, int64_t{1} << 62, 4}); }), "has too many elements"));
  std::remove(path.c_str());
}

TEST_CASE("load_model: unknown config keys of a checkpoint are ignored with a warning; ignore_index is understood") {
  const Model m(ModelConfig::from_json({{"dim", 8}, {"layers", 1}, {"heads", 2}, {"vocab_size", 32}}), 1);
  const std::string path = tmp("other_writer.safetensors");
  json cfg = m.config().to_json();
  cfg["ignore_index"] = -100;  // the PyTorch reference writes it
  cfg["dropout"] = 0.1;        // a key mmrec does not know
  write_safetensors(path, m.parameters(), {{"config", cfg.dump()}});
  std::vector<std::string> warnings;
  const Model l = load_model(path, &warnings);
  CHECK(l.config().ignore_index == -100);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == "load_model: '" + path + "': ignoring the unknown key model.dropout of its \"config\" metadata");
  // A user's config stays strict.
  CHECK(error_of([&] { ModelConfig::from_json(cfg); }) == "model.dropout: unknown key");
  // ignore_index is the default of loss(): targets equal to it are skipped.
  const Model z(ModelConfig::from_json({{"dim", 8}, {"layers", 1}, {"heads", 2}, {"vocab_size", 32},
                                        {"ignore_index", 0}}), 1);
  const Tensor tokens = Tensor::from_vector(std::vector<int32_t>{3, 0, 5, 0, 7}, {1, 5});
  CHECK(z.loss(tokens).item() == doctest::Approx(z.loss(tokens, nullptr, 0).item()));
  CHECK(z.loss(tokens).item() != doctest::Approx(z.loss(tokens, nullptr, -1).item()));
  CHECK(z.config().to_json().at("ignore_index") == 0);
  CHECK_FALSE(m.config().to_json().contains("ignore_index"));  // files without it are written as before
  std::remove(path.c_str());
}

TEST_CASE("read_train_state: crafted sizes behind a valid checksum are errors, never wraps") {
  const std::string path = tmp("state.bin");
  auto err = [&](const std::string& bytes) {
    put(path, bytes);
    return error_of([&] { read_train_state(path); });
  };
  const std::string ok_header = R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[2],"offset":0,"bytes":8}]})";
  put(path, train_state_file(ok_header, ok_header.size(), std::string(8, '\x01')));
  CHECK(read_train_state(path).tensors.at(0).second.shape() == Shape{2});
  // 16 + header length wraps around.
  CHECK(err(train_state_file(ok_header, UINT64_MAX - 7, "")) ==
        path + ": corrupt (header length 18446744073709551608 past the end)");
  // offset + bytes wraps around.
  const std::string wrap =
      R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[2],"offset":18446744073709551608,"bytes":8}]})";
  CHECK(err(train_state_file(wrap, wrap.size(), std::string(8, '\0'))) == path + ": corrupt (tensor m out of bounds)");
  // An element count that overflows: 2^62 x 4 f32 "fits" 0 bytes modulo 2^64.
  const std::string count =
      R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[4611686018427387904,4],"offset":0,"bytes":0}]})";
  CHECK(err(train_state_file(count, count.size(), "")) == path + ": corrupt (tensor m shape [4611686018427387904, 4])");
  // A shape that does not describe its bytes (it used to read header text as a moment).
  const std::string size = R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[3],"offset":0,"bytes":8}]})";
  CHECK(err(train_state_file(size, size.size(), std::string(8, '\0'))) ==
        path + ": corrupt (tensor m shape [3] does not fit its 8 bytes)");
  const std::string neg = R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[-2],"offset":0,"bytes":8}]})";
  CHECK(err(train_state_file(neg, neg.size(), std::string(8, '\0'))) == path + ": corrupt header (a dimension is -2)");
  const std::string flt = R"({"meta":{},"tensors":[{"name":"m","dtype":"f32","shape":[2],"offset":1e300,"bytes":8}]})";
  CHECK(err(train_state_file(flt, flt.size(), std::string(8, '\0'))) == path + ": corrupt header (an offset is 1e+300)");
  std::remove(path.c_str());
}

TEST_CASE("token cache: a flipped bit is caught by its checksum and the cache is rebuilt with a note") {
  const std::string dir = tmp("cache");
  fs::create_directories(dir);
  DataConfig c;
  c.source = "synthetic";
  c.synthetic_bytes = 8192;
  const Tokenizer tok = Tokenizer::byte_level();
  std::vector<std::string> notes;
  auto note = [&](const std::string& s) { notes.push_back(s); };
  const TokenDataset a = TokenDataset::prepare(c, tok, dir, note);
  std::vector<int32_t> want;
  for (int64_t i = 0; i < a.size(); ++i) want.push_back(a.token(i));
  const std::string path = a.path();
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.put('\x07');  // one token changed
  }
  CHECK(error_of([&] { TokenDataset::open(path, 0.05); }) == path + ": corrupt token cache (checksum mismatch)");
  notes.clear();
  const TokenDataset b = TokenDataset::prepare(c, tok, dir, note);
  REQUIRE(!notes.empty());
  CHECK(notes[0] == path + ": corrupt token cache (checksum mismatch): rebuilding it");
  std::vector<int32_t> got;
  for (int64_t i = 0; i < b.size(); ++i) got.push_back(b.token(i));
  CHECK(got == want);
  // A valid checksum over out-of-vocabulary ids and wrong sizes are errors too.
  TokenDataset::write_cache(path, {1, 2, 300}, 256, 7);
  CHECK(error_of([&] { TokenDataset::open(path, 0.05); }) ==
        path + ": corrupt token cache (token 300 at 2 is outside the vocabulary of 256)");
  std::string bytes = read_file(path);
  const uint64_t huge = (uint64_t{1} << 63) + 3;  // count * width wraps to 6
  std::memcpy(bytes.data() + 16, &huge, 8);
  put(path, bytes);
  CHECK(has(error_of([&] { TokenDataset::open(path, 0.05); }), "truncated token cache"));
  fs::remove_all(dir);
}

TEST_CASE("allocation failures name what was allocated; the trainer refuses a config that cannot fit") {
  const std::string e = error_of([] { Tensor::empty({int64_t{1} << 42}); });
  CHECK(has(e, "out of memory: a f32 tensor [4398046511104] needs 16777216.0 MiB"));
  const std::string m = error_of([] {
    Model(ModelConfig::from_json({{"vocab_size", ModelConfig::kMaxVocab}, {"dim", ModelConfig::kMaxDim},
                                  {"layers", 1}, {"heads", 1}}));
  });
  CHECK(has(m, "model.dim 65536 x vocab 16777216, 1 layers ("));
  CHECK(has(m, "embed.weight [16777216, 65536]: out of memory: a f32 tensor [16777216, 65536] needs 4194304.0 MiB"));

  TrainConfig cfg = TrainConfig::from_json(json::parse(R"({"model": {"dim": 16384, "layers": 64, "heads": 4},
      "data": {"source": "synthetic"}, "train": {"steps": 1}})"));
  const std::string t = error_of([&] { Trainer(cfg, {.run_dir = tmp("oom_run")}); });
  CHECK(has(t, "model.dim 16384 x 64 layers x vocab 256, train.batch_size 8 x seq_len 256: training needs at least"));
  CHECK(has(t, "for weights, gradients and AdamW moments"));
  CHECK_FALSE(fs::exists(tmp("oom_run")));
  // The estimate is a lower bound: the test suite's own small runs fit easily.
  const MemoryEstimate small = estimate_training_memory(ModelConfig{}, OptimConfig{});
  CHECK(small.total() < 1e9);
  CHECK(small.parameter_bytes == 16.0 * static_cast<double>(Model(ModelConfig{}).num_parameters()));
}

TEST_CASE("NaN propagates through sigmoid, GELU and softmax (vector body and tail)") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n : {1, 7, 37, 100}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i) - 2.0f;
    const size_t at = static_cast<size_t>(n - 1);
    v[at] = nan;
    v[0] = n > 1 ? nan : v[0];
    const Tensor x = Tensor::from_vector(v, {1, n});
    const Tensor s = ops::sigmoid(x), g = ops::gelu(x), p = ops::softmax(x);
    CAPTURE(n);
    CHECK(std::isnan(s.data<float>()[at]));
    CHECK(std::isnan(g.data<float>()[at]));
    CHECK(std::isnan(s.data<float>()[0]));
    CHECK(std::isnan(g.data<float>()[0]));
    for (int64_t i = 0; i < n; ++i) CHECK(std::isnan(p.data<float>()[i]));  // the whole row is undefined
    if (n > 2) CHECK(s.data<float>()[1] == doctest::Approx(1.0 / (1.0 + std::exp(-(0.1 - 2.0)))).epsilon(1e-6));
  }
}
