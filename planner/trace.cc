#include "planner/trace.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace recsched::plan {
namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string part;
  while (std::getline(ss, part, ',')) {
    const size_t a = part.find_first_not_of(" \t\r"), b = part.find_last_not_of(" \t\r");
    out.push_back(a == std::string::npos ? "" : part.substr(a, b - a + 1));
  }
  return out;
}

bool parse_number(const std::string& s, double* out) {
  try {
    size_t used = 0;
    *out = std::stod(s, &used);
    return used == s.size() && std::isfinite(*out);
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

Result<Trace> diurnal_trace(const std::vector<DiurnalModel>& models, double slot_minutes,
                            double trough) {
  if (!(slot_minutes > 0 && slot_minutes <= 1440) ||
      std::fabs(1440 / slot_minutes - std::round(1440 / slot_minutes)) > 1e-9)
    return invalid_argument("slot minutes must divide the day's 1440");
  if (!(trough >= 0 && trough <= 1)) return invalid_argument("trough must be in [0, 1]");
  Trace t;
  t.slot_minutes = slot_minutes;
  const int n = int(std::lround(1440 / slot_minutes));
  t.slots.resize(n);
  for (const DiurnalModel& m : models) {
    if (!(m.peak_qps >= 0)) return invalid_argument(m.model + ": peak q/s must be >= 0");
    t.models.push_back(m.model);
    for (int s = 0; s < n; ++s) {
      const double hour = (s + 0.5) * slot_minutes / 60;
      const double phase = 2 * M_PI * (hour - m.peak_hour) / 24;
      t.slots[s][m.model] = m.peak_qps * (trough + (1 - trough) * (1 + std::cos(phase)) / 2);
    }
  }
  return t;
}

Result<Trace> read_trace_csv(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return invalid_argument(path + " is a directory, not a trace");
  std::ifstream f(path);
  if (!f) return not_found("cannot open trace " + path);
  Trace t;
  std::string line;
  int line_no = 0;
  std::vector<double> minutes;
  auto bad = [&](const std::string& why) {
    return invalid_argument(path + ":" + std::to_string(line_no) + ": " + why);
  };
  while (std::getline(f, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    const std::vector<std::string> cells = split_csv(line);
    if (t.models.empty()) {
      if (cells.size() < 2 || cells[0] != "minute")
        return bad("the header must be minute,<model>,<model>...");
      for (size_t i = 1; i < cells.size(); ++i) {
        if (cells[i].empty()) return bad("an empty model name in the header");
        for (size_t k = 1; k < i; ++k)
          if (cells[k] == cells[i]) return bad("model '" + cells[i] + "' twice in the header");
        t.models.push_back(cells[i]);
      }
      continue;
    }
    if (cells.size() != t.models.size() + 1)
      return bad(std::to_string(cells.size()) + " cells, the header has " +
                 std::to_string(t.models.size() + 1));
    double minute = 0;
    if (!parse_number(cells[0], &minute) || minute < 0 || minute >= 1440)
      return bad("minute '" + cells[0] + "' is not in [0, 1440)");
    std::map<std::string, double> slot;
    for (size_t i = 0; i < t.models.size(); ++i) {
      double q = 0;
      if (!parse_number(cells[i + 1], &q) || q < 0)
        return bad(t.models[i] + ": '" + cells[i + 1] + "' is not a load >= 0");
      slot[t.models[i]] = q;
    }
    if (!minutes.empty() && minute <= minutes.back()) return bad("minutes must increase");
    if (minutes.size() >= 2 &&
        std::fabs((minute - minutes.back()) - (minutes[1] - minutes[0])) > 1e-6)
      return bad("slots must be equally spaced");
    minutes.push_back(minute);
    t.slots.push_back(std::move(slot));
  }
  if (t.models.empty()) return invalid_argument(path + ": no header");
  if (t.slots.empty()) return invalid_argument(path + ": no slots");
  t.slot_minutes = minutes.size() >= 2 ? minutes[1] - minutes[0] : 1440 - minutes[0];
  if (minutes[0] != 0) return invalid_argument(path + ": the first slot must start at minute 0");
  return t;
}

}  // namespace recsched::plan
