#include "train/train_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tensor/error.h"
#include "train/json_reader.h"

namespace mmrec {

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
  TrainConfig c;
  JsonReader root(j, "");
  {
    nlohmann::json m = root.raw("model");
    check(m.is_null() || m.is_object(), "model: expected an object, got ", json_repr(m));
    c.model = m.is_null() ? nlohmann::json::object() : m;
  }
  {
    JsonReader r = root.object("data");
    DataConfig& d = c.data;
    d.source = r.choice("source", d.source, {"files", "synthetic"});
    d.paths = r.strings("paths");
    d.format = r.choice("format", d.format, {"auto", "text", "jsonl"});
    d.text_field = r.string("text_field", d.text_field);
    d.tokenizer = r.string("tokenizer", d.tokenizer);
    d.val_fraction = r.number("val_fraction", d.val_fraction, Range().gt(0.0).lt(0.5));
    d.cache_dir = r.string("cache_dir", d.cache_dir);
    d.synthetic_bytes = r.integer("synthetic_bytes", d.synthetic_bytes, Range().ge(4096));
    d.synthetic_seed = r.integer("synthetic_seed", d.synthetic_seed, Range().ge(0));
    r.finish();
    check(!d.tokenizer.empty(), "data.tokenizer: expected \"byte\" or the path of a tokenizer JSON, got \"\"");
  }
  {
    JsonReader r = root.object("train");
    OptimConfig& t = c.train;
    t.steps = r.integer("steps", t.steps, Range().ge(1));
    t.batch_size = r.integer("batch_size", t.batch_size, Range().ge(1));
    t.seq_len = r.integer("seq_len", t.seq_len, Range().ge(1));
    t.grad_accum = r.integer("grad_accum", t.grad_accum, Range().ge(1));
    t.lr = r.number("lr", t.lr, Range().gt(0.0));
    t.weight_decay = r.number("weight_decay", t.weight_decay, Range().ge(0.0));
    t.beta1 = r.number("beta1", t.beta1, Range().ge(0.0).lt(1.0));
    t.beta2 = r.number("beta2", t.beta2, Range().ge(0.0).lt(1.0));
    t.eps = r.number("eps", t.eps, Range().gt(0.0));
    t.grad_clip = r.number("grad_clip", t.grad_clip, Range().ge(0.0));
    t.decay_embeddings = r.boolean("decay_embeddings", t.decay_embeddings);
    t.decay_norms_and_biases = r.boolean("decay_norms_and_biases", t.decay_norms_and_biases);
    t.seed = r.integer("seed", t.seed, Range().ge(0));
    t.threads = r.integer("threads", t.threads, Range().ge(0).le(1024));
    t.compile = r.boolean("compile", t.compile);
    t.checkpointing = r.choice("checkpointing", t.checkpointing, {"none", "block", "chunk"});
    t.checkpoint_tokens = r.integer("checkpoint_tokens", t.checkpoint_tokens, Range().ge(0));
    t.amp = r.choice("amp", t.amp, {"none", "bf16"});
    r.finish();
  }
  {
    JsonReader r = root.object("schedule");
    ScheduleConfig& s = c.schedule;
    s.kind = r.choice("kind", s.kind, {"constant", "cosine", "linear"});
    s.warmup_steps = r.integer("warmup_steps", s.warmup_steps, Range().ge(0));
    s.min_lr = r.number("min_lr", s.min_lr, Range().ge(0.0));
    check(s.min_lr <= c.train.lr, "schedule.min_lr: ", s.min_lr, " is larger than train.lr ", c.train.lr);
    PlateauConfig& p = s.plateau;
    p.enabled = r.has("plateau");
    JsonReader q = r.object("plateau");
    p.monitor = q.choice("monitor", p.monitor, {"val_loss", "train_loss"});
    p.mode = q.choice("mode", p.mode, {"min", "max"});
    p.factor = q.number("factor", p.factor, Range().gt(0.0).lt(1.0));
    p.patience = q.integer("patience", p.patience, Range().ge(0));
    p.threshold = q.number("threshold", p.threshold, Range().ge(0.0));
    p.threshold_mode = q.choice("threshold_mode", p.threshold_mode, {"rel", "abs"});
    p.cooldown = q.integer("cooldown", p.cooldown, Range().ge(0));
    p.min_lr = q.number("min_lr", p.min_lr, Range().ge(0.0));
    p.eps = q.number("eps", p.eps, Range().ge(0.0));
    p.smoothing = q.number("smoothing", p.smoothing, Range().ge(0.0).lt(1.0));
    q.finish();
    r.finish();
  }
  {
    JsonReader r = root.object("checkpoint");
    CheckpointConfig& k = c.checkpoint;
    k.interval = r.integer("interval", k.interval, Range().ge(0));
    k.keep = r.integer("keep", k.keep, Range().ge(0));
    k.resume = r.choice("resume", k.resume, {"never", "auto"});
    k.dtype = r.choice("dtype", k.dtype, {"f32", "bf16"});
    r.finish();
  }
  {
    JsonReader r = root.object("log");
    LogConfig& l = c.log;
    l.run_dir = r.string("run_dir", l.run_dir);
    l.interval = r.integer("interval", l.interval, Range().ge(1));
    l.eval_interval = r.integer("eval_interval", l.eval_interval, Range().ge(0));
    l.eval_batches = r.integer("eval_batches", l.eval_batches, Range().ge(1));
    l.progress = r.choice("progress", l.progress, {"auto", "live", "lines", "none"});
    r.finish();
  }
  {
    QatConfig& q = c.qat;
    q.enabled = root.has("qat");
    JsonReader r = root.object("qat");
    q.start_step = r.integer("start_step", q.start_step, Range().ge(0));
    q.freeze_observers_step = r.integer("freeze_observers_step", q.freeze_observers_step, Range().ge(-1));
    q.layers = r.strings("layers", q.layers);
    q.head = r.boolean("head", q.head);
    q.averaging_constant = r.number("averaging_constant", q.averaging_constant, Range().gt(0.0).le(1.0));
    r.finish();
    const QatConfig def;
    for (const std::string& l : q.layers)
      check(std::find(def.layers.begin(), def.layers.end(), l) != def.layers.end(), "qat.layers: unknown layer \"",
            l, "\" (expected qkvz, gate, decay.fc1, decay.fc2, context.fc1, context.fc2, attn_out, ffn.fc1 or ffn.fc2)");
  }
  root.finish();
  if (c.data.source == "files")
    check(!c.data.paths.empty(), "data.paths: required when data.source is \"files\" (a file, a directory or a list)");
  return c;
}

TrainConfig TrainConfig::load(const std::string& path) {
  std::ifstream f(path);
  check(f.good(), path, ": cannot open the config file");
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number overflow
    fail(path, ": invalid JSON: ", e.what());
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j;
  j["model"] = model;
  const DataConfig& d = data;
  j["data"] = {{"source", d.source},         {"paths", d.paths},
               {"format", d.format},         {"text_field", d.text_field},
               {"tokenizer", d.tokenizer},   {"val_fraction", d.val_fraction},
               {"cache_dir", d.cache_dir},   {"synthetic_bytes", d.synthetic_bytes},
               {"synthetic_seed", d.synthetic_seed}};
  const OptimConfig& t = train;
  j["train"] = {{"steps", t.steps},
                {"batch_size", t.batch_size},
                {"seq_len", t.seq_len},
                {"grad_accum", t.grad_accum},
                {"lr", t.lr},
                {"weight_decay", t.weight_decay},
                {"beta1", t.beta1},
                {"beta2", t.beta2},
                {"eps", t.eps},
                {"grad_clip", t.grad_clip},
                {"decay_embeddings", t.decay_embeddings},
                {"decay_norms_and_biases", t.decay_norms_and_biases},
                {"seed", t.seed},
                {"threads", t.threads},
                {"compile", t.compile},
                {"checkpointing", t.checkpointing},
                {"checkpoint_tokens", t.checkpoint_tokens},
                {"amp", t.amp}};
  const ScheduleConfig& s = schedule;
  j["schedule"] = {{"kind", s.kind}, {"warmup_steps", s.warmup_steps}, {"min_lr", s.min_lr}};
  if (s.plateau.enabled) {
    const PlateauConfig& p = s.plateau;
    j["schedule"]["plateau"] = {{"monitor", p.monitor},     {"mode", p.mode},
                                {"factor", p.factor},       {"patience", p.patience},
                                {"threshold", p.threshold}, {"threshold_mode", p.threshold_mode},
                                {"cooldown", p.cooldown},   {"min_lr", p.min_lr},
                                {"eps", p.eps},             {"smoothing", p.smoothing}};
  }
  j["checkpoint"] = {{"interval", checkpoint.interval},
                     {"keep", checkpoint.keep},
                     {"resume", checkpoint.resume},
                     {"dtype", checkpoint.dtype}};
  j["log"] = {{"run_dir", log.run_dir},
              {"interval", log.interval},
              {"eval_interval", log.eval_interval},
              {"eval_batches", log.eval_batches},
              {"progress", log.progress}};
  if (qat.enabled)
    j["qat"] = {{"start_step", qat.start_step}, {"freeze_observers_step", qat.freeze_observers_step},
                {"layers", qat.layers},         {"head", qat.head},
                {"averaging_constant", qat.averaging_constant}};
  return j;
}

std::string default_run_dir(const std::string& config_path) {
  return (std::filesystem::path("runs") / std::filesystem::path(config_path).stem()).string();
}

}  // namespace mmrec
