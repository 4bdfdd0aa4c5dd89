#include "train/json_reader.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tensor/error.h"

namespace mmrec {

std::string json_repr(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

namespace {
std::string fmt_num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

JsonReader::JsonReader(const nlohmann::json& j, std::string path) : path_(std::move(path)) {
  if (j.is_null()) {
    j_ = nlohmann::json::object();
  } else {
    check(j.is_object(), path_.empty() ? std::string("config") : path_, ": expected an object, got ", json_repr(j));
    j_ = j;
  }
}

const nlohmann::json* JsonReader::get(const std::string& key) {
  known_.push_back(key);
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonReader::has(const std::string& key) const {
  auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

nlohmann::json JsonReader::raw(const std::string& key) {
  const nlohmann::json* v = get(key);
  return v ? *v : nlohmann::json();
}

void JsonReader::check_range(const std::string& key, double v, const Range& r) const {
  const std::string p = key_path(key);
  if (r.ge_ && !(v >= *r.ge_)) fail(p, ": must be >= ", fmt_num(*r.ge_), ", got ", fmt_num(v));
  if (r.gt_ && !(v > *r.gt_)) fail(p, ": must be > ", fmt_num(*r.gt_), ", got ", fmt_num(v));
  if (r.le_ && !(v <= *r.le_)) fail(p, ": must be <= ", fmt_num(*r.le_), ", got ", fmt_num(v));
  if (r.lt_ && !(v < *r.lt_)) fail(p, ": must be < ", fmt_num(*r.lt_), ", got ", fmt_num(v));
}

double JsonReader::number(const std::string& key, double def, const Range& r) {
  const nlohmann::json* v = get(key);
  if (!v) return def;
  check(v->is_number(), key_path(key), ": expected a number, got ", json_repr(*v));
  const double x = v->get<double>();
  check(std::isfinite(x), key_path(key), ": expected a finite number, got ", json_repr(*v));
  check_range(key, x, r);
  return x;
}

int64_t JsonReader::integer(const std::string& key, int64_t def, const Range& r) {
  const nlohmann::json* v = get(key);
  if (!v) return def;
  bool ok = v->is_number_integer();
  if (!ok && v->is_number_float()) {  // 1e3 is an integer too
    const double d = v->get<double>();
    ok = std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15;
  }
  check(ok, key_path(key), ": expected an integer, got ", json_repr(*v));
  const int64_t x = v->is_number_float() ? static_cast<int64_t>(v->get<double>())
                    : v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>())
                                              : v->get<int64_t>();
  check_range(key, static_cast<double>(x), r);
  return x;
}

bool JsonReader::boolean(const std::string& key, bool def) {
  const nlohmann::json* v = get(key);
  if (!v) return def;
  check(v->is_boolean(), key_path(key), ": expected true or false, got ", json_repr(*v));
  return v->get<bool>();
}

std::string JsonReader::string(const std::string& key, const std::string& def) {
  const nlohmann::json* v = get(key);
  if (!v) return def;
  check(v->is_string(), key_path(key), ": expected a string, got ", json_repr(*v));
  return v->get<std::string>();
}

std::string JsonReader::choice(const std::string& key, const std::string& def,
                               const std::vector<std::string>& allowed) {
  const std::string s = string(key, def);
  if (std::find(allowed.begin(), allowed.end(), s) != allowed.end()) return s;
  std::string list;
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (i) list += i + 1 == allowed.size() ? " or " : ", ";
    list += "\"" + allowed[i] + "\"";
  }
  fail(key_path(key), ": unknown value \"", s, "\" (expected ", list, ")");
}

std::vector<std::string> JsonReader::strings(const std::string& key, const std::vector<std::string>& def) {
  const nlohmann::json* v = get(key);
  if (!v) return def;
  if (v->is_string()) return {v->get<std::string>()};
  check(v->is_array(), key_path(key), ": expected a string or an array of strings, got ", json_repr(*v));
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const auto& e = (*v)[i];
    check(e.is_string(), key_path(key), "[", i, "]: expected a string, got ", json_repr(e));
    out.push_back(e.get<std::string>());
  }
  return out;
}

JsonReader JsonReader::object(const std::string& key) {
  const nlohmann::json* v = get(key);
  return JsonReader(v ? *v : nlohmann::json(), key_path(key));
}

void JsonReader::finish() const {
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    std::vector<std::string> k = known_;
    std::sort(k.begin(), k.end());
    k.erase(std::unique(k.begin(), k.end()), k.end());
    std::string list;
    for (size_t i = 0; i < k.size(); ++i) list += (i ? ", " : "") + k[i];
    fail(key_path(it.key()), ": unknown key (expected one of: ", list, ")");
  }
}

}  // namespace mmrec
