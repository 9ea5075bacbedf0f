#include "bench/load/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace recsched::load {

namespace {

std::vector<double> numbers(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(part, &used));
      if (used != part.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      throw std::invalid_argument(what + ": '" + part + "' is not a number");
    }
  }
  return out;
}

uint32_t to_cap(double v, const std::string& what) {
  if (!(v >= 1 && v <= 1e7)) throw std::invalid_argument(what + ": cap must be in [1, 1e7]");
  return uint32_t(v);
}

}  // namespace

SizeDistribution SizeDistribution::parse(const std::string& text) {
  SizeDistribution d;
  const size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const std::string args = colon == std::string::npos ? "" : text.substr(colon + 1);
  const std::string what = "--sizes " + text;
  if (kind == "lognormal") {
    d.kind = Kind::kLognormal;
    if (!args.empty()) {
      const auto v = numbers(args, what);
      if (v.size() < 2 || v.size() > 3)
        throw std::invalid_argument(what + ": lognormal takes MU,SIGMA[,CAP]");
      d.a = v[0];
      d.b = v[1];
      if (v.size() == 3) d.cap = to_cap(v[2], what);
    }
    if (!(d.b >= 0)) throw std::invalid_argument(what + ": sigma must be >= 0");
  } else if (kind == "normal") {
    d.kind = Kind::kNormal;
    const auto v = numbers(args, what);
    if (v.size() < 2 || v.size() > 3)
      throw std::invalid_argument(what + ": normal takes MEAN,SD[,CAP]");
    d.a = v[0];
    d.b = v[1];
    if (v.size() == 3) d.cap = to_cap(v[2], what);
    if (!(d.b >= 0)) throw std::invalid_argument(what + ": sd must be >= 0");
  } else if (kind == "fixed") {
    d.kind = Kind::kFixed;
    const auto v = numbers(args, what);
    if (v.size() != 1 || !(v[0] >= 1) || v[0] > 1e7 || v[0] != std::floor(v[0]))
      throw std::invalid_argument(what + ": fixed takes one size >= 1");
    d.a = v[0];
    d.cap = uint32_t(v[0]);
  } else if (kind == "file") {
    d.kind = Kind::kSamples;
    std::ifstream in(args);
    if (!in) throw std::invalid_argument(what + ": cannot open " + args);
    double v;
    while (in >> v) {
      if (!(v >= 1) || v > 1e7) throw std::invalid_argument(what + ": sizes must be in [1, 1e7]");
      d.samples.push_back(uint32_t(std::lround(v)));
    }
    if (!in.eof()) throw std::invalid_argument(what + ": not a list of numbers");
    if (d.samples.empty()) throw std::invalid_argument(what + ": no sizes in " + args);
    d.cap = *std::max_element(d.samples.begin(), d.samples.end());
  } else {
    throw std::invalid_argument(what + ": expected lognormal, normal, fixed or file");
  }
  return d;
}

uint32_t SizeDistribution::draw(std::mt19937_64& rng) const {
  double v = a;
  switch (kind) {
    case Kind::kLognormal:
      v = std::lognormal_distribution<double>(a, b)(rng);
      break;
    case Kind::kNormal:
      v = std::normal_distribution<double>(a, b)(rng);
      break;
    case Kind::kFixed:
      break;
    case Kind::kSamples:
      return samples[std::uniform_int_distribution<size_t>(0, samples.size() - 1)(rng)];
  }
  return uint32_t(std::clamp(std::round(v), 1.0, double(cap)));
}

uint32_t SizeDistribution::max_size() const { return cap; }

std::string SizeDistribution::describe() const {
  std::ostringstream o;
  switch (kind) {
    case Kind::kLognormal:
      o << "lognormal(mu=" << a << ", sigma=" << b << ", cap=" << cap << ")";
      break;
    case Kind::kNormal:
      o << "normal(mean=" << a << ", sd=" << b << ", cap=" << cap << ")";
      break;
    case Kind::kFixed:
      o << "fixed(" << cap << ")";
      break;
    case Kind::kSamples:
      o << "samples(" << samples.size() << " sizes, max " << cap << ")";
      break;
  }
  return o.str();
}

std::vector<Arrival> make_schedule(double qps, double duration_s,
                                   const std::vector<double>& weights,
                                   const SizeDistribution& sizes, uint64_t seed) {
  if (!(qps > 0)) throw std::invalid_argument("the offered load must be > 0 queries/s");
  if (weights.empty()) throw std::invalid_argument("the model mix is empty");
  for (double w : weights) {
    if (!(w >= 0)) throw std::invalid_argument("model weights must be >= 0");
  }
  std::discrete_distribution<uint32_t> pick_model(weights.begin(), weights.end());
  if (std::all_of(weights.begin(), weights.end(), [](double w) { return w == 0; }))
    throw std::invalid_argument("model weights are all zero");
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(qps);
  std::vector<Arrival> out;
  out.reserve(size_t(qps * duration_s * 1.05) + 16);
  double t = gap(rng);
  while (t < duration_s) {
    Arrival a;
    a.t_ns = int64_t(t * 1e9);
    a.model = pick_model(rng);
    a.items = sizes.draw(rng);
    a.pick = rng();
    out.push_back(a);
    t += gap(rng);
  }
  return out;
}

}  // namespace recsched::load
