#pragma once
// A small thread-safe Prometheus registry rendering the text exposition
// format 0.0.4 (what `promtool check metrics` and a Prometheus scrape accept).
//
// Counters and gauges are single atomics; a histogram child takes a short
// mutex per observation. Families and children are never removed, so every
// reference handed out stays valid for the registry's lifetime: look a child
// up once and keep the reference on hot paths.
//
// Registration mistakes (an invalid metric or label name, the same name
// registered with another type, labels or buckets) are programming errors
// found by the first test run: they print the reason and abort.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace flux::metrics {

// A value that only goes up. inc() with a negative or NaN amount is ignored.
class Counter {
 public:
  void inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `upper_bounds` strictly increasing and finite; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);  // NaN is ignored

  struct Snapshot {
    std::vector<double> upper_bounds;         // without +Inf
    std::vector<uint64_t> cumulative_counts;  // one per upper bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> upper_bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> bucket_counts_;  // non-cumulative, last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// `count` buckets: start, start*factor, start*factor^2, ...
std::vector<double> exponential_buckets(double start, double factor, int count);
// `count` buckets: start, start+width, start+2*width, ...
std::vector<double> linear_buckets(double start, double width, int count);

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  // Appends the # HELP, # TYPE and sample lines of this family.
  virtual void render(std::string& out) const = 0;

 protected:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
};

// One metric with a fixed set of label names; a child per combination of label values.
template <class T>
class Family final : public FamilyBase {
 public:
  // The child for these label values, created on first use. Pass exactly one
  // value per label name; a wrong count is a programming error and aborts.
  T& with(const std::vector<std::string>& label_values = {});
  void render(std::string& out) const override;

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make_child);

  std::function<std::unique_ptr<T>()> make_child_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
  // (not starting with "__"). Registering the same name again with the same
  // type and labels returns the existing family.
  //
  // A counter's name gets "_total" appended unless it already ends with it.
  Family<Counter>& counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  // A histogram may not have a label named "le".
  Family<Histogram>& histogram(std::string name, std::string help, std::vector<double> buckets,
                               std::vector<std::string> label_names = {});

  // Every family, sorted by name, in the text exposition format 0.0.4.
  std::string render() const;

 private:
  template <class T>
  Family<T>& add(std::string name, std::string help, std::vector<std::string> label_names,
                 std::function<std::unique_ptr<T>()> make_child, const std::vector<double>* buckets);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_;
  std::map<std::string, std::vector<double>> histogram_buckets_;
};

// Escaping used by render(), exposed for tests and for other exporters.
std::string escape_label_value(std::string_view value);
std::string format_value(double value);

}  // namespace flux::metrics
