// `ucp-reshard diff A B [--rtol R] [--atol T] [--json] [--max-report N]`: compares two state dicts
// (any layout format::StateDict reads) tensor by tensor: names, dtypes, shapes, then values.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

#include "ucp/base/status.h"

namespace ucp::cli {

struct DiffOptions {
  std::string a;
  std::string b;
  double rtol = 0;
  double atol = 0;
  bool json = false;
  /// Difference lines printed before "... and N more" (text output; JSON lists all). 0 prints only
  /// the notes and the summary; negative means no limit.
  int max_report = 20;
};

/// Help text for the subcommand: what "equal" means.
inline constexpr std::string_view kDiffDescription =
    "Compare two state dicts (.safetensors, torch .bin/.pt, a model directory / index, a PyTorch DCP folder). "
    "Without --rtol/--atol, tensors must be bitwise identical (every byte, for every dtype: -0.0 "
    "differs from +0.0, NaN payloads count). With a tolerance, floating tensors are compared in "
    "float64, element-wise |a - b| <= atol + rtol * |b| (numpy.allclose), NaN equal only to NaN, an "
    "infinity only to itself, and "
    "a dtype mismatch between two floating types is still reported but its values are compared too; "
    "integer and bool tensors are always compared exactly. Exit status 0 if equal, 1 if different.";

/// Single-process: reads both inputs, writes the report to `out`. True if A and B are equal under
/// the options; an error Status only if an input cannot be read or the options are invalid.
base::Result<bool> run_diff(const DiffOptions& options, std::ostream& out);

}  // namespace ucp::cli
