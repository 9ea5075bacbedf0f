// A day of load for recsched-plan: q/s per model per time slot, from a diurnal shape or a
// file.
//
// The diurnal shape (no trace of recommendation traffic is public): a cosine between a
// trough and the peak, peaking at `peak_hour`. The default trough, 0.4 of the peak, gives a
// daily mean of 0.7 of the peak: the "average idleness of 30 % over a 24 hour period"
// Google reports for websearch servers (Lo et al., Heracles, ISCA 2015); Facebook's
// Autoscale (2014) describes the same shape, lowest around midnight. Models may peak at
// different hours (`peak_hour` per model).
//
// The file format: CSV, a header `minute,<model>,<model>...`, then one row per slot: its
// start in minutes from midnight (increasing, equally spaced) and each model's q/s.
// Lines starting with '#' are comments. Depends on core's Status.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace recsched::plan {

struct Trace {
  double slot_minutes = 15;
  std::vector<std::string> models;
  std::vector<std::map<std::string, double>> slots;  ///< q/s per model, per slot
  double start_minute(size_t slot) const { return slot * slot_minutes; }
};

struct DiurnalModel {
  std::string model;
  double peak_qps = 0;
  double peak_hour = 20;
};

/// kInvalidArgument for slot_minutes outside (0, 1440] or not dividing the day, a trough
/// outside [0, 1], or a negative peak.
Result<Trace> diurnal_trace(const std::vector<DiurnalModel>& models, double slot_minutes = 15,
                            double trough = 0.4);

/// kNotFound / kInvalidArgument with the line that is wrong.
Result<Trace> read_trace_csv(const std::string& path);

}  // namespace recsched::plan
