// libFuzzer target: a training state file, also behind a valid checksum
// (fuzz_util.h): sizes, offsets, shapes and dtypes of the header.
#include "fuzz_util.h"
#include "train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mmrec::fuzz::MemFile file;
  const std::string s = mmrec::fuzz::with_checksum(data, size, -8, 0, -8);
  const std::string path = file.write(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  try {
    const mmrec::TrainState st = mmrec::read_train_state(path);
    for (const auto& [name, t] : st.tensors) t.contiguous();
  } catch (const mmrec::Error&) {
  }
  return 0;
}
