// Trains a small MM-Rec model for a few steps on an in-memory string with the
// C++ API, generates from it, and saves it (a checkpoint stream.c and
// generate.py can load).
//
//   train_generate [OUT.safetensors [STEPS]]
#include <mmrec/mmrec.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

using namespace mmrec;

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "model.safetensors";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 60;
  try {
    std::string text;
    for (int i = 0; i < 40; ++i) text += "the cat sat on the mat. the dog sat on the log. ";
    const Tokenizer tok = Tokenizer::byte_level();
    const std::vector<int32_t> ids = tok.encode(text);

    ModelConfig cfg;
    cfg.dim = 64, cfg.layers = 2, cfg.heads = 2, cfg.memory_slots = 8, cfg.hds_levels = 2, cfg.chunk_size = 16;
    Model model(cfg, /*seed=*/1);
    OptimConfig oc;  // AdamW defaults of the `train` section
    oc.lr = 3e-3;
    AdamW opt(model.parameters(), decay_mask(model.parameters(), oc), oc);

    // Each step: 8 windows of 65 tokens from the text, next-token loss, AdamW.
    const int64_t B = 8, W = 65;
    Generator g(1);
    for (int s = 1; s <= steps; ++s) {
      std::vector<int32_t> batch;
      for (int64_t b = 0; b < B; ++b) {
        const size_t start = g.next_u64() % (ids.size() - W + 1);
        batch.insert(batch.end(), ids.begin() + start, ids.begin() + start + W);
      }
      Tensor loss = model.loss(Tensor::from_vector(batch, {B, W}));
      autograd::backward(loss);
      clip_grad_norm(model.parameters(), 1.0);
      opt.step(oc.lr);
      opt.zero_grad();
      if (s % 10 == 0 || s == 1) std::printf("step %3d  loss %.3f\n", s, loss.item());
    }

    // Generation: the prompt in one call, then one token per call.
    autograd::NoGradGuard no_grad;
    const std::string prompt = "the dog ";
    const std::vector<int32_t> p = tok.encode(prompt);
    State state = model.initial_state(1);
    const InferencePack pack = model.pack_for_inference(1);
    Tensor logits = model.forward(Tensor::from_vector(p, {1, static_cast<int64_t>(p.size())}), state);
    int64_t last = static_cast<int64_t>(p.size()) - 1;
    std::string gen;
    for (int i = 0; i < 40; ++i) {
      const int64_t V = cfg.vocab_size;
      const int32_t next = static_cast<int32_t>(sample_token(logits.data<float>() + last * V, V, 0.0, 0, g));
      gen += tok.decode({next});
      logits = model.forward(Tensor::from_vector(std::vector<int32_t>{next}, {1, 1}), state, &pack);
      last = 0;
    }
    std::printf("%s%s\n", prompt.c_str(), gen.c_str());
    save_model(out, model);
    std::printf("saved %s\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_generate: %s\n", e.what());
    return 1;
  }
}
