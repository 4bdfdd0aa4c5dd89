// libFuzzer target: a safetensors file given to load_model (header, shapes,
// offsets, the config metadata, the tensors against the config).
#include "fuzz_util.h"
#include "autograd/tape.h"
#include "models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mmrec::fuzz::MemFile file;
  const std::string path = file.write(data, size);
  try {
    mmrec::Model m = mmrec::load_model(path);
    // A model that loaded must run.
    mmrec::autograd::NoGradGuard no_grad;
    mmrec::State s = m.initial_state(1);
    m.forward(mmrec::Tensor::from_vector(std::vector<int32_t>{0, 0}, {1, 2}), s);
  } catch (const mmrec::Error&) {
  }
  try {
    mmrec::read_safetensors(path);
  } catch (const mmrec::Error&) {
  }
  return 0;
}
