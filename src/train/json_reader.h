// Reads one JSON object of a config, naming the key path in every error and
// rejecting keys it was not asked about.
//
//   JsonReader r(j["train"], "train");
//   double lr = r.number("lr", 3e-4, Range().gt(0));   // "train.lr: expected a number, got \"x\""
//   std::string k = r.choice("kind", "cosine", {"constant", "cosine", "linear"});
//   r.finish();                                    // "train.lrr: unknown key (expected one of: ...)"
#pragma once
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mmrec {

// Bounds for numbers, each checked only when set: Range().ge(0).lt(1).
struct Range {
  std::optional<double> ge_, gt_, le_, lt_;
  Range& ge(double v) { return ge_ = v, *this; }
  Range& gt(double v) { return gt_ = v, *this; }
  Range& le(double v) { return le_ = v, *this; }
  Range& lt(double v) { return lt_ = v, *this; }
};

class JsonReader {
 public:
  // `j` must be an object or null (null reads as an empty object).
  JsonReader(const nlohmann::json& j, std::string path);

  double number(const std::string& key, double def, const Range& r = {});
  int64_t integer(const std::string& key, int64_t def, const Range& r = {});
  bool boolean(const std::string& key, bool def);
  std::string string(const std::string& key, const std::string& def);
  // One of `allowed`; else "path.key: unknown value \"foo\" (expected \"a\", \"b\" or \"c\")".
  std::string choice(const std::string& key, const std::string& def, const std::vector<std::string>& allowed);
  // A string or an array of strings.
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& def = {});
  // A nested object (null or absent: empty) and whether it was given.
  JsonReader object(const std::string& key);
  bool has(const std::string& key) const;
  // The raw value (marks the key as known), or null when absent.
  nlohmann::json raw(const std::string& key);

  // Throws for the first key that no accessor asked for.
  void finish() const;
  const std::string& path() const { return path_; }
  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const nlohmann::json* get(const std::string& key);
  void check_range(const std::string& key, double v, const Range& r) const;

  nlohmann::json j_;
  std::string path_;
  std::vector<std::string> known_;
};

// `"x"` for strings, the JSON text otherwise (for messages).
std::string json_repr(const nlohmann::json& v);

}  // namespace mmrec
