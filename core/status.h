// Errors that cross a component boundary: Status, Result<T>, RECSCHED_RETURN_IF_ERROR.
// Standard library only. Only daemon/ maps codes to HTTP statuses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace recsched {

enum class StatusCode : uint8_t {
  kOk,
  kInvalidArgument,   ///< caller's fault (bad JSON, unknown model, bad index)
  kNotFound,          ///< a named thing does not exist
  kUnavailable,       ///< expected rejection: queue full, no device meets the SLO
  kDeadlineExceeded,  ///< query expired before it ran
  kInternal,          ///< a bug or broken invariant
};

std::string_view to_string(StatusCode code);

/// A code and a one-line message. Cheap to return when OK (no allocation).
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// "invalid argument: <message>".
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}
inline Status not_found(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
inline Status unavailable(std::string msg) {
  return Status(StatusCode::kUnavailable, std::move(msg));
}
inline Status internal_error(std::string msg) {
  return Status(StatusCode::kInternal, std::move(msg));
}

/// A T or a non-OK Status, shaped like std::expected<T, Status>.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit on purpose, as std::expected
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).is_ok()) v_ = Status(StatusCode::kInternal, "Result built from OK");
  }

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  /// The error; Status::ok() when a value is held.
  Status status() const { return has_value() ? Status::ok() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace recsched

#define RECSCHED_CONCAT_INNER_(a, b) a##b
#define RECSCHED_CONCAT_(a, b) RECSCHED_CONCAT_INNER_(a, b)

/// Returns the Status of `expr` from the enclosing function unless it is OK.
#define RECSCHED_RETURN_IF_ERROR(expr)                      \
  do {                                                      \
    ::recsched::Status recsched_status_ = (expr);           \
    if (!recsched_status_.is_ok()) return recsched_status_; \
  } while (0)

/// `RECSCHED_ASSIGN_OR_RETURN(auto x, make_x())`: unwraps a Result or returns its Status.
#define RECSCHED_ASSIGN_OR_RETURN(lhs, expr) \
  RECSCHED_ASSIGN_OR_RETURN_IMPL_(RECSCHED_CONCAT_(recsched_result_, __LINE__), lhs, expr)
#define RECSCHED_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.has_value()) return tmp.status();            \
  lhs = std::move(tmp).value()
