#include "shared/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace flux::metrics {
namespace {

[[noreturn]] void fatal(const std::string& message) {
  (void)std::fprintf(stderr, "flux::metrics: %s\n", message.c_str());
  (void)std::fflush(stderr);
  std::abort();
}

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  const auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; };
  const auto tail = [&](char c) { return head(c) || (c >= '0' && c <= '9'); };
  return head(name[0]) && std::all_of(name.begin() + 1, name.end(), tail);
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  const auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  const auto tail = [&](char c) { return head(c) || (c >= '0' && c <= '9'); };
  return head(name[0]) && std::all_of(name.begin() + 1, name.end(), tail);
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} from names and values, with an optional extra pair (le for buckets).
std::string label_set(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
  return out;
}

void render_header(std::string& out, const std::string& name, const std::string& help, std::string_view type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += escape_help(help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void render_sample(std::string& out, const std::string& name, std::string_view suffix, const std::string& labels,
                   double value) {
  out += name;
  out += suffix;
  out += labels;
  out += ' ';
  out += format_value(value);
  out += '\n';
}

template <class T>
constexpr std::string_view type_name();
template <>
constexpr std::string_view type_name<Counter>() {
  return "counter";
}
template <>
constexpr std::string_view type_name<Gauge>() {
  return "gauge";
}
template <>
constexpr std::string_view type_name<Histogram>() {
  return "histogram";
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Counter& counter) {
  render_sample(out, name, "", label_set(label_names, label_values), counter.value());
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Gauge& gauge) {
  render_sample(out, name, "", label_set(label_names, label_values), gauge.value());
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Histogram& histogram) {
  const Histogram::Snapshot snap = histogram.snapshot();
  for (size_t i = 0; i < snap.upper_bounds.size(); ++i) {
    render_sample(out, name, "_bucket", label_set(label_names, label_values, "le", format_value(snap.upper_bounds[i])),
                  static_cast<double>(snap.cumulative_counts[i]));
  }
  render_sample(out, name, "_bucket", label_set(label_names, label_values, "le", "+Inf"),
                static_cast<double>(snap.count));
  const std::string labels = label_set(label_names, label_values);
  render_sample(out, name, "_sum", labels, snap.sum);
  render_sample(out, name, "_count", labels, static_cast<double>(snap.count));
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, result.ptr);
}

// ---- Counter / Histogram ---------------------------------------------------

void Counter::inc(double v) {
  if (!(v >= 0)) return;  // also rejects NaN
  value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), bucket_counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  // Buckets are "less than or equal": v == bound belongs to that bound's bucket.
  const size_t index = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) - upper_bounds_.begin();
  std::lock_guard lock(mu_);
  ++bucket_counts_[index];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snap;
  snap.upper_bounds = upper_bounds_;
  std::lock_guard lock(mu_);
  snap.cumulative_counts.reserve(bucket_counts_.size());
  uint64_t running = 0;
  for (const uint64_t n : bucket_counts_) {
    running += n;
    snap.cumulative_counts.push_back(running);
  }
  snap.sum = sum_;
  snap.count = count_;
  return snap;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  out.reserve(count > 0 ? count : 0);
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) out.push_back(bound);
  return out;
}

std::vector<double> linear_buckets(double start, double width, int count) {
  std::vector<double> out;
  out.reserve(count > 0 ? count : 0);
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

// ---- Family ----------------------------------------------------------------

template <class T>
Family<T>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::function<std::unique_ptr<T>()> make_child)
    : FamilyBase(std::move(name), std::move(help), std::move(label_names)), make_child_(std::move(make_child)) {
  // A family without labels has exactly one child; create it now so that it is
  // exported as 0 before the first event instead of being absent.
  if (label_names_.empty()) children_.emplace(std::vector<std::string>{}, make_child_());
}

template <class T>
T& Family<T>::with(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    fatal(name_ + ": " + std::to_string(label_values.size()) + " label values given for " +
          std::to_string(label_names_.size()) + " label names");
  }
  std::lock_guard lock(mu_);
  auto it = children_.find(label_values);
  if (it == children_.end()) it = children_.emplace(label_values, make_child_()).first;
  return *it->second;
}

template <class T>
void Family<T>::render(std::string& out) const {
  render_header(out, name_, help_, type_name<T>());
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) render_child(out, name_, label_names_, values, *child);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Registry --------------------------------------------------------------

Registry::Registry() = default;
Registry::~Registry() = default;

template <class T>
Family<T>& Registry::add(std::string name, std::string help, std::vector<std::string> label_names,
                         std::function<std::unique_ptr<T>()> make_child, const std::vector<double>* buckets) {
  const std::string_view type = type_name<T>();
  if (!valid_metric_name(name)) fatal("invalid metric name \"" + name + "\"");
  for (auto it = label_names.begin(); it != label_names.end(); ++it) {
    const std::string& label = *it;
    if (!valid_label_name(label)) fatal(std::string(name).append(": invalid label name \"").append(label) + "\"");
    if (buckets != nullptr && label == "le") fatal(name + ": a histogram cannot have a label named \"le\"");
    if (std::find(label_names.begin(), it, label) != it) {
      fatal(std::string(name).append(": label \"").append(label) + "\" given twice");
    }
  }

  std::lock_guard lock(mu_);
  if (const auto it = families_.find(name); it != families_.end()) {
    auto* existing = dynamic_cast<Family<T>*>(it->second.get());
    const bool same = existing != nullptr && existing->label_names_ == label_names &&
                      (buckets == nullptr || histogram_buckets_[name] == *buckets);
    if (!same)
      fatal(name + ": registered twice with a different type, labels or buckets (now as " + std::string(type) + ")");
    return *existing;
  }
  if (buckets != nullptr) histogram_buckets_[name] = *buckets;
  auto* family = new Family<T>(name, std::move(help), std::move(label_names), std::move(make_child));
  families_.emplace(std::move(name), std::unique_ptr<FamilyBase>(family));
  return *family;
}

Family<Counter>& Registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
  if (!name.ends_with("_total")) name += "_total";
  return add<Counter>(
      std::move(name), std::move(help), std::move(label_names), [] { return std::make_unique<Counter>(); }, nullptr);
}

Family<Gauge>& Registry::gauge(std::string name, std::string help, std::vector<std::string> label_names) {
  return add<Gauge>(
      std::move(name), std::move(help), std::move(label_names), [] { return std::make_unique<Gauge>(); }, nullptr);
}

Family<Histogram>& Registry::histogram(std::string name, std::string help, std::vector<double> buckets,
                                       std::vector<std::string> label_names) {
  // A trailing +Inf is implicit; accept it when given explicitly.
  if (!buckets.empty() && std::isinf(buckets.back()) && buckets.back() > 0) buckets.pop_back();
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
      fatal(name + ": histogram buckets must be finite and strictly increasing");
    }
  }
  return add<Histogram>(
      std::move(name), std::move(help), std::move(label_names),
      [buckets] { return std::make_unique<Histogram>(buckets); }, &buckets);
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) family->render(out);
  return out;
}

}  // namespace flux::metrics
