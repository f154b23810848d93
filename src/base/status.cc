#include "ucp/base/status.h"

namespace ucp::base {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kDataLoss: return "DataLoss";
    case StatusCode::kUnimplemented: return "Unimplemented";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kInterrupted: return "Interrupted";
  }
  return "Unknown";
}

Status& Status::annotate(std::string_view context) & {
  if (!ok()) message_ = std::string(context) + ": " + message_;
  return *this;
}

Status&& Status::annotate(std::string_view context) && {
  annotate(context);
  return std::move(*this);
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  return std::string(status_code_name(code_)) + ": " + message_;
}

int Status::exit_code() const {
  // 1 is left to "something escaped"; argument errors use 2 as most CLIs do.
  switch (code_) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return 2;
    case StatusCode::kNotFound: return 3;
    case StatusCode::kDataLoss: return 4;
    case StatusCode::kUnimplemented: return 5;
    case StatusCode::kFailedPrecondition: return 6;
    case StatusCode::kResourceExhausted: return 7;
    case StatusCode::kUnavailable: return 8;
    case StatusCode::kInternal: return 9;
    case StatusCode::kInterrupted: return 10;
  }
  return 1;
}

Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
Status unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
Status failed_precondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
Status interrupted(std::string m) { return {StatusCode::kInterrupted, std::move(m)}; }

}  // namespace ucp::base
