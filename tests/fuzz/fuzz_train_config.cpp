// libFuzzer target: a training config file (every section, the model's
// bounds, the memory estimate).
#include "fuzz_util.h"
#include "models/config.h"
#include "train/memory_estimate.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mmrec::fuzz::MemFile file;
  const std::string path = file.write(data, size);
  try {
    const mmrec::TrainConfig c = mmrec::TrainConfig::load(path);
    c.to_json().dump();
    const mmrec::ModelConfig m = mmrec::ModelConfig::from_json(c.model);
    mmrec::estimate_training_memory(m, c.train);
    m.to_json().dump();
  } catch (const mmrec::Error&) {
  }
  return 0;
}
