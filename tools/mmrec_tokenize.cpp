// mmrec-tokenize: trains a byte-level BPE tokenizer on text or JSONL files and
// saves it as JSON for data.tokenizer in an mmrec-train config.
//
//   mmrec-tokenize --input data/brown/brown.txt --vocab 4096 --out data/brown/tok4096.json
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "train/data.h"
#include "train/tokenizer.h"
#include "common/args.h"
#include "common/omp_env.h"

using namespace mmrec;

namespace {
void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: mmrec-tokenize --input FILE|DIR... --vocab N --out TOKENIZER.json\n"
               "                      [--format auto|text|jsonl] [--field text]\n"
               "Learns N - 256 byte-pair merges (fewer if no pair repeats) and writes them as JSON.\n"
               "JSONL documents are read from --field (default \"text\"); --format auto picks JSONL\n"
               "for .jsonl/.json files.\n");
}
}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  try {
    std::vector<std::string> inputs;
    std::string out, format = "auto", field = "text";
    int64_t vocab = 0;
    tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--input")) {
        inputs.push_back(args.value());
        while (args.plain_follows()) inputs.push_back(args.value());
      } else if (args.is("--vocab")) {
        vocab = args.int_value(1);
      } else if (args.is("--out")) {
        out = args.value();
      } else if (args.is("--format")) {
        format = args.value();
        if (format != "auto" && format != "text" && format != "jsonl")
          throw tools::UsageError("--format must be auto, text or jsonl, got '" + format + "'");
      } else if (args.is("--field")) {
        field = args.value();
      } else if (args.is("-h") || args.is("--help")) {
        usage(stdout);
        return 0;
      } else {
        args.unknown();
      }
    }
    if (inputs.empty() || out.empty() || vocab <= 0) {
      usage(stderr);
      return 2;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    const auto files = list_data_files(inputs);
    BpeTrainer trainer;
    int64_t bytes = 0, docs = 0;
    std::string sample;  // the first MiB, to check the round trip and measure compression
    for_each_document(files, format, field, [&](std::string_view doc) {
      trainer.add_text(doc);
      bytes += static_cast<int64_t>(doc.size());
      ++docs;
      if (sample.size() < (1u << 20)) sample.append(doc.substr(0, (1u << 20) - sample.size()));
    });
    std::printf("read %zu file(s), %lld document(s), %.2f MB, %lld distinct chunks (%.1f s)\n", files.size(),
                static_cast<long long>(docs), bytes / 1e6, static_cast<long long>(trainer.unique_chunks()), secs());
    const Tokenizer tok = trainer.train(vocab, [&](int64_t done, int64_t total) {
      std::fprintf(stderr, "\rmerges %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
    });
    std::fprintf(stderr, "\n");
    const auto ids = tok.encode(sample);
    if (tok.decode(ids) != sample) throw Error("mmrec-tokenize: internal error: the round trip failed");
    tok.save(out);
    std::printf("wrote %s: vocabulary %lld (%zu merges), %.2f bytes per token on the first %.2f MB, %.1f s\n",
                out.c_str(), static_cast<long long>(tok.vocab_size()), tok.merges().size(),
                ids.empty() ? 0.0 : static_cast<double>(sample.size()) / static_cast<double>(ids.size()),
                sample.size() / 1e6, secs());
    return 0;
  } catch (const tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-tokenize: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
