#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "tensor/error.h"
#include "train/fileio.h"

namespace mmrec {
namespace fs = std::filesystem;

MetricsLog::MetricsLog(const std::string& path, int64_t keep_until_step) : path_(path) {
  const fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) fs::create_directories(dir);
  std::string kept;
  if (keep_until_step >= 0 && fs::exists(path)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        continue;  // a line cut short by a kill
      }
      if (!j.is_object() || !j.contains("step") || j["step"].get<int64_t>() > keep_until_step) continue;
      kept += line + "\n";
      track(j);
    }
  }
  write_file_atomic(path, kept);
  f_ = std::fopen(path.c_str(), "a");
  check(f_ != nullptr, path, ": cannot open for appending");
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

MetricsLog::MetricsLog(MetricsLog&& o) noexcept { *this = std::move(o); }

MetricsLog& MetricsLog::operator=(MetricsLog&& o) noexcept {
  if (this != &o) {
    if (f_) std::fclose(f_);
    path_ = std::move(o.path_);
    f_ = o.f_;
    o.f_ = nullptr;
    train_ = std::move(o.train_);
    val_ = std::move(o.val_);
  }
  return *this;
}

void MetricsLog::track(const nlohmann::json& j) {
  const int64_t step = j.value("step", int64_t{0});
  if (j.contains("loss") && j["loss"].is_number()) train_.emplace_back(step, j["loss"].get<double>());
  if (j.contains("val_loss") && j["val_loss"].is_number()) val_.emplace_back(step, j["val_loss"].get<double>());
}

void MetricsLog::write(const nlohmann::json& line) {
  check(f_ != nullptr, "MetricsLog: not open");
  const std::string s = line.dump() + "\n";
  std::fwrite(s.data(), 1, s.size(), f_);
  std::fflush(f_);
  track(line);
}

namespace {
std::string num(double v, int prec = 4) {
  std::ostringstream os;
  os.precision(prec);
  os << v;
  return os.str();
}

// 1-2-5 tick step covering `span` in about `n` ticks
double nice_step(double span, int n) {
  const double raw = span / n;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}
}  // namespace

std::string loss_curve_svg(const Curve& train, const Curve& val, int64_t total_steps, const std::string& title) {
  const double W = 720, H = 420, L = 64, R = 20, T = 36, B = 48;
  double ymin = 1e300, ymax = -1e300;
  for (const Curve* c : {&train, &val})
    for (const auto& [s, v] : *c)
      if (std::isfinite(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  if (ymin > ymax) ymin = 0, ymax = 1;
  if (ymax - ymin < 1e-9) ymin -= 0.5, ymax += 0.5;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;
  const double xmax = std::max<double>(1.0, static_cast<double>(total_steps));
  auto X = [&](double s) { return L + (W - L - R) * s / xmax; };
  auto Y = [&](double v) { return T + (H - T - B) * (ymax - v) / (ymax - ymin); };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << escape(title) << "</text>\n";
  const double ys = nice_step(ymax - ymin, 6);
  for (double v = std::ceil(ymin / ys) * ys; v <= ymax; v += ys) {
    o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << Y(v) << "\" y2=\"" << Y(v)
      << "\" stroke=\"#e6e6e6\"/>\n";
    o << "<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">" << num(v) << "</text>\n";
  }
  const double xs = nice_step(xmax, 8);
  for (double s = 0; s <= xmax + 1e-9; s += xs) {
    o << "<line x1=\"" << X(s) << "\" x2=\"" << X(s) << "\" y1=\"" << T << "\" y2=\"" << H - B
      << "\" stroke=\"#f0f0f0\"/>\n";
    o << "<text x=\"" << X(s) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << num(s, 6) << "</text>\n";
  }
  o << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\">step</text>\n";
  o << "<text x=\"16\" y=\"" << (T + H - B) / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
    << (T + H - B) / 2 << ")\">loss (nats/token)</text>\n";
  auto polyline = [&](const Curve& c, const char* color, double width) {
    if (c.empty()) return;
    o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << width << "\" points=\"";
    for (const auto& [s, v] : c)
      if (std::isfinite(v)) o << num(X(static_cast<double>(s)), 6) << "," << num(Y(v), 6) << " ";
    o << "\"/>\n";
  };
  polyline(train, "#1f77b4", 1.2);
  polyline(val, "#d62728", 2.0);
  for (const auto& [s, v] : val)
    if (std::isfinite(v))
      o << "<circle cx=\"" << num(X(static_cast<double>(s)), 6) << "\" cy=\"" << num(Y(v), 6)
        << "\" r=\"3\" fill=\"#d62728\"/>\n";
  o << "<line x1=\"" << W - R - 150 << "\" x2=\"" << W - R - 130 << "\" y1=\"" << T + 16 << "\" y2=\"" << T + 16
    << "\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"" << W - R - 124 << "\" y=\"" << T + 20
    << "\">train loss</text>\n";
  o << "<line x1=\"" << W - R - 150 << "\" x2=\"" << W - R - 130 << "\" y1=\"" << T + 34 << "\" y2=\"" << T + 34
    << "\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"" << W - R - 124 << "\" y=\"" << T + 38
    << "\">validation loss</text>\n";
  o << "</svg>\n";
  return o.str();
}

void write_loss_svg(const std::string& path, const Curve& train, const Curve& val, int64_t total_steps,
                    const std::string& title) {
  write_file_atomic(path, loss_curve_svg(train, val, total_steps, title));
}

size_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[48];
  if (t < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(t));
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(t / 60),
                                   static_cast<long long>(t % 60));
  else std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                     static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

std::string format_count(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string format_progress(const ProgressInfo& p) {
  const int w = static_cast<int>(std::to_string(p.total).size());
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %*lld/%lld | loss %.4f | lr %.2e | gnorm %.3g | %s tok/s | %s < %s", w,
                static_cast<long long>(p.step), static_cast<long long>(p.total), p.loss, p.lr, p.grad_norm,
                format_count(p.tokens_per_s).c_str(), format_duration(p.elapsed_s).c_str(),
                format_duration(p.eta_s).c_str());
  return buf;
}

}  // namespace mmrec
