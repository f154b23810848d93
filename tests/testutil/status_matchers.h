// gtest matchers for Status / Result: EXPECT_THAT(s, StatusIs(StatusCode::kDataLoss, HasSubstr("offset"))).
#pragma once

#include <gmock/gmock.h>

#include "ucp/base/status.h"

namespace ucp::testutil {

inline const base::Status& to_status(const base::Status& s) { return s; }
template <typename T>
const base::Status& to_status(const base::Result<T>& r) { return r.status(); }

MATCHER_P2(StatusIs, code, message_matcher,
           std::string("status code ") + std::string(base::status_code_name(code))) {
  const base::Status& s = to_status(arg);
  *result_listener << "which is " << s.to_string();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, s.message(), result_listener);
}

MATCHER(IsOk, "is OK") {
  const base::Status& s = to_status(arg);
  *result_listener << "which is " << s.to_string();
  return s.ok();
}

}  // namespace ucp::testutil
