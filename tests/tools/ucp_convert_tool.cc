// Test-only CLI exposing base::convert_elements to the Python oracle (tests/oracle/
// test_convert_torch.py), which compares its output bytes with torch's and numpy's conversions.
//
//   ucp_convert_tool FROM TO IN.bin OUT.bin    FROM/TO: f64, f32, f16, bf16 (or any name
//                                               base::dtype_from_user_name accepts)
// IN.bin is raw little-endian elements of FROM; OUT.bin receives the same count of TO.
// Errors: a message on stderr, exit code Status::exit_code() (never 0).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "ucp/base/convert.h"
#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace {

using ucp::base::DType;
using ucp::base::Status;

int fail(const Status& s) {
  std::cerr << "ucp_convert_tool: " << s.to_string() << "\n";
  return s.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: ucp_convert_tool FROM TO IN.bin OUT.bin   (dtypes: f64 f32 f16 bf16)\n";
    return 2;
  }
  const auto from = ucp::base::dtype_from_user_name(argv[1]);
  const auto to = ucp::base::dtype_from_user_name(argv[2]);
  if (!from || !to) return fail(ucp::base::invalid_argument(std::string("unknown dtype '") + (from ? argv[2] : argv[1]) + "'"));
  if (!ucp::base::can_convert(*from, *to)) {
    return fail(ucp::base::invalid_argument(std::string("cannot convert ") + argv[1] + " to " + argv[2]));
  }
  std::ifstream in(argv[3], std::ios::binary);
  if (!in) return fail(ucp::base::not_found(std::string("cannot open '") + argv[3] + "'"));
  std::vector<char> src((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t in_size = ucp::base::dtype_size(*from);
  if (src.size() % in_size != 0) {
    return fail(ucp::base::invalid_argument(std::string("'") + argv[3] + "': size " + std::to_string(src.size()) +
                                            " is not a multiple of " + std::to_string(in_size)));
  }
  const std::size_t count = src.size() / in_size;
  std::vector<char> dst(count * ucp::base::dtype_size(*to));
  ucp::base::convert_elements(*from, reinterpret_cast<const std::byte*>(src.data()), *to,
                              reinterpret_cast<std::byte*>(dst.data()), count);
  std::ofstream out(argv[4], std::ios::binary | std::ios::trunc);
  out.write(dst.data(), static_cast<std::streamsize>(dst.size()));
  out.close();
  if (!out) return fail(ucp::base::resource_exhausted(std::string("cannot write '") + argv[4] + "'"));
  return 0;
}
