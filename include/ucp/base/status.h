// Status and Result<T>: the error vocabulary of every library module.
//
// Library code never throws across a module boundary and never aborts on bad input: every
// fallible function returns a Status or a Result<T>. Messages say what failed, on which object and
// where (file, offset), then expected versus actual. Each level adds context with annotate().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ucp::base {

/// The small, closed set of error kinds. Exit codes derive from these (see exit_code()).
enum class StatusCode : std::uint8_t {
  kOk = 0,
  kInvalidArgument,     ///< Bad flag, config key or value given by the user.
  kNotFound,            ///< Missing file, shard, record or tensor.
  kDataLoss,            ///< Corrupt or truncated input.
  kUnimplemented,       ///< Valid input we do not support (yet): dtype, pickle opcode, layout.
  kFailedPrecondition,  ///< State of the world is wrong: output exists, world sizes disagree.
  kResourceExhausted,   ///< A cap was hit: memory bound, disk full, size limit.
  kUnavailable,         ///< Communication failure or timeout.
  kInternal,            ///< A bug in ucp-reshard.
  kInterrupted,         ///< Stopped on request (SIGTERM/SIGINT) at a round boundary; resumable.
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  /// Prefixes context: "while reading 'x.pt': <old message>". No-op on OK.
  Status& annotate(std::string_view context) &;
  Status&& annotate(std::string_view context) &&;

  /// "DataLoss: <message>", or "OK".
  std::string to_string() const;

  /// Process exit code for this status: 0 for OK, distinct small numbers otherwise.
  int exit_code() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status invalid_argument(std::string message);
Status not_found(std::string message);
Status data_loss(std::string message);
Status unimplemented(std::string message);
Status failed_precondition(std::string message);
Status resource_exhausted(std::string message);
Status unavailable(std::string message);
Status internal_error(std::string message);
Status interrupted(std::string message);

/// A value or the Status explaining why there is none. Never holds an OK status without a value.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design, like absl::StatusOr.
  Result(Status status) : data_(std::move(status)) {  // NOLINT
    if (std::get<Status>(data_).ok()) data_ = Status(StatusCode::kInternal, "Result built from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  Status take_status() && { return ok() ? Status() : std::move(std::get<Status>(data_)); }

  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  Result& annotate(std::string_view context) & {
    if (!ok()) std::get<Status>(data_).annotate(context);
    return *this;
  }
  Result&& annotate(std::string_view context) && {
    if (!ok()) std::get<Status>(data_).annotate(context);
    return std::move(*this);
  }

 private:
  std::variant<T, Status> data_;
};

namespace internal {
inline Status to_status(const Status& s) { return s; }
inline Status to_status(Status&& s) { return std::move(s); }
template <typename T>
Status to_status(Result<T>&& r) { return std::move(r).take_status(); }
}  // namespace internal

}  // namespace ucp::base

#define UCP_STATUS_CONCAT_INNER(a, b) a##b
#define UCP_STATUS_CONCAT(a, b) UCP_STATUS_CONCAT_INNER(a, b)

/// Returns the Status of `expr` from the enclosing function if it is an error.
#define UCP_RETURN_IF_ERROR(expr)                                                  \
  do {                                                                             \
    ::ucp::base::Status ucp_status_ = ::ucp::base::internal::to_status((expr));    \
    if (!ucp_status_.ok()) return ucp_status_;                                     \
  } while (false)

/// `UCP_ASSIGN_OR_RETURN(auto x, make_x());` — declares/assigns from a Result or returns its error.
#define UCP_ASSIGN_OR_RETURN(lhs, expr) \
  UCP_ASSIGN_OR_RETURN_IMPL(UCP_STATUS_CONCAT(ucp_result_, __LINE__), lhs, expr)
#define UCP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).take_status(); \
  lhs = std::move(tmp).value()
