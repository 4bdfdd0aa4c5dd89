// libFuzzer target: a token cache file, also behind a valid checksum
// (fuzz_util.h); one that opens must serve its windows.
#include "fuzz_util.h"
#include "train/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mmrec::fuzz::MemFile file;
  const std::string s = mmrec::fuzz::with_checksum(data, size, 40, 48, static_cast<long>(size) - 1);
  const std::string path = file.write(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  try {
    const mmrec::TokenDataset d = mmrec::TokenDataset::open(path, 0.25);
    for (int64_t i = 0; i < d.size(); ++i)
      if (d.token(i) < 0 || d.token(i) >= d.vocab_size()) std::abort();
    mmrec::Generator g(1);
    if (d.train_tokens() >= 2) d.train_batch(g, 2, 2);
    if (d.val_windows(2) > 0) d.val_batch(0, 2, 2);
  } catch (const mmrec::Error&) {
  }
  return 0;
}
