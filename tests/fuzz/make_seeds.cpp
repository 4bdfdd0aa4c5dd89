// Writes the fuzz targets' seed corpora: one valid file of each format
// (and a few variants) under DIR/<target>/.
//   make_seeds DIR
#include <filesystem>
#include <fstream>
#include <string>

#include "models/safetensors.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/fileio.h"
#include "train/tokenizer.h"

using namespace mmrec;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

// A file written by the library, with the flag byte that keeps its checksum valid (fuzz_util.h).
std::string checksummed(const std::string& path) { return std::string(1, '\x01') + read_file(path); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  const fs::path tmp = root / "tmp";
  fs::create_directories(tmp);

  for (bool tied : {true, false}) {
    const Model m(ModelConfig::from_json({{"vocab_size", 16}, {"dim", 8}, {"layers", 1}, {"heads", 2},
                                          {"ffn_dim", 8}, {"mdi_dim", 2}, {"memory_slots", 2},
                                          {"chunk_size", 4}, {"tie_embeddings", tied}}),
                  1);
    const std::string p = (tmp / "m.safetensors").string();
    save_model(p, m, tied ? DType::f32 : DType::bf16);
    put(root / "safetensors", tied ? "tied_f32" : "untied_bf16", read_file(p));
  }

  put(root / "train_config", "synthetic",
      R"({"model": {"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64, "mdi_dim": 8, "memory_slots": 4},
          "data": {"source": "synthetic", "synthetic_bytes": 65536},
          "train": {"steps": 10, "batch_size": 4, "seq_len": 48, "lr": 3e-3, "grad_accum": 2},
          "schedule": {"kind": "linear", "warmup_steps": 5, "min_lr": 3e-4,
                       "plateau": {"patience": 0, "factor": 0.5, "threshold": 0.2}},
          "checkpoint": {"interval": 20, "keep": 2, "resume": "auto"},
          "log": {"interval": 1, "eval_interval": 20, "eval_batches": 2, "progress": "lines"}})");
  put(root / "train_config", "files",
      R"({"data": {"paths": ["a.txt", "dir"], "format": "jsonl", "text_field": "body", "tokenizer": "tok.json",
                   "val_fraction": 0.1}, "model": {"vocab_size": 512, "recurrence": "sequential"}})");

  BpeTrainer bpe;
  bpe.add_text(synthetic_corpus(8192, 1));
  const Tokenizer tok = bpe.train(320);
  put(root / "tokenizer", "bpe320", tok.to_json_string());
  put(root / "tokenizer", "empty", Tokenizer::from_merges({}).to_json_string());

  {
    TrainState st;
    st.meta = {{"format", "mmrec-train-state"}, {"step", 3}};
    Generator g(1);
    st.tensors = {{"adamw.m.embed.weight", randn({4, 3}, g)}, {"adamw.v.embed.weight", Tensor::zeros({5}, DType::bf16)},
                  {"empty", Tensor::zeros({0, 2}, DType::i64)}};
    const std::string p = (tmp / "state.bin").string();
    write_train_state(p, st);
    put(root / "train_state", "state", checksummed(p));
  }

  for (int64_t vocab : {256, 70000}) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 64; ++i) tokens.push_back(static_cast<int32_t>((i * 37) % vocab));
    const std::string p = (tmp / "tokens.bin").string();
    TokenDataset::write_cache(p, tokens, vocab, 0x1234);
    put(root / "token_cache", "vocab" + std::to_string(vocab), checksummed(p));
  }
  fs::remove_all(tmp);
  return 0;
}
