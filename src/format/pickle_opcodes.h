// Private to the pickle reader and writer: the opcode table (CPython Lib/pickle.py and
// pickletools.py are the reference for their meaning) and the Python 2 -> 3 module renames that
// Python applies to protocol < 3 pickles (Lib/_compat_pickle.py), defined once for both directions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace ucp::format::pickle {

enum Op : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicode = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadonlyBuffer = 0x98,
};

// Module renames between Python 2 and 3 that appear in checkpoints.
inline constexpr std::pair<std::string_view, std::string_view> kModuleRenames[] = {
    {"__builtin__", "builtins"}, {"copy_reg", "copyreg"}, {"exceptions", "builtins"},
    {"UserDict", "collections"}, {"UserList", "collections"}, {"UserString", "collections"},
    {"cPickle", "pickle"},       {"Queue", "queue"},      {"repr", "reprlib"},
};

/// The Python 3 name of a module as a protocol < 3 pickle spells it (what Python's unpickler
/// does with fix_imports); other names unchanged.
inline std::string python3_module(std::string_view module) {
  for (const auto& [py2, py3] : kModuleRenames)
    if (module == py2) return std::string(py3);
  return std::string(module);
}

/// The spelling to write at `protocol`: Python 2 names below protocol 3 (as CPython's pickler with
/// fix_imports), Python 3 names from protocol 3 on. Only one-to-one renames go back to Python 2.
inline std::string module_for_protocol(std::string_view module, int protocol) {
  if (protocol >= 3) return python3_module(module);
  for (const auto& [py2, py3] : kModuleRenames)
    if (module == py3 && py2 != "exceptions" && py3 != "collections") return std::string(py2);
  return std::string(module);
}

}  // namespace ucp::format::pickle
