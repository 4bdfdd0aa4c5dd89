// libFuzzer target: a tokenizer JSON; one that loads must round-trip bytes.
#include <cstdlib>

#include "fuzz_util.h"
#include "train/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mmrec::fuzz::MemFile file;
  const std::string path = file.write(data, size);
  try {
    const mmrec::Tokenizer t = mmrec::Tokenizer::load(path);
    const std::string text = "The cat sees 42 apples!\n\xff\x01  done";
    if (t.decode(t.encode(text)) != text) std::abort();
    if (mmrec::Tokenizer::from_merges(t.merges()).fingerprint() != t.fingerprint()) std::abort();
  } catch (const mmrec::Error&) {
  }
  return 0;
}
