// torch.save files ("new" zip serialization, torch >= 1.6): read into a Value tree whose tensors
// view the mapped file, and write Value trees back as files torch.load reads.
//
// Layout: <archive>/data.pkl (pickle), <archive>/data/<key> (raw little-endian storage bytes, one
// record per storage), <archive>/version ("3\n"), <archive>/byteorder ("little"). The archive
// folder name is arbitrary: the reader takes it from the record holding data.pkl.
//
// Reading: every persistent id must be ('storage', torch.<X>Storage, key, location, numel); one
// Storage per key (tensors sharing a key share it, as in torch.load) viewing "<archive>/data/<key>",
// whose size must be at least numel * element size (torch writes exactly that; a longer record's
// prefix is used). torch.UntypedStorage reads as a u8 storage of numel bytes.
#pragma once

#include <memory>
#include <string>

#include "ucp/base/status.h"
#include "ucp/format/pickle_reader.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/value.h"
#include "ucp/format/zip_reader.h"

namespace ucp::format {

class TorchFile {
 public:
  /// Maps, parses the directory and the pickle, resolves every storage to its record and checks
  /// that each storage fits its record and each tensor fits its storage. Errors name the file.
  static base::Result<TorchFile> open(const std::string& path, const PickleLimits& limits = {});
  /// Same on a file already mapped or held in memory (MappedFile::from_bytes): fuzzers, tests.
  static base::Result<TorchFile> parse(std::shared_ptr<const MappedFile> file, const PickleLimits& limits = {});

  const ValuePtr& root() const { return root_; }
  const std::string& archive_name() const { return archive_name_; }
  const ZipReader& zip() const { return zip_; }
  const std::string& path() const { return zip_.path(); }

 private:
  TorchFile(ZipReader zip, std::string archive_name, ValuePtr root)
      : zip_(std::move(zip)), archive_name_(std::move(archive_name)), root_(std::move(root)) {}
  ZipReader zip_;
  std::string archive_name_;
  ValuePtr root_;
};

struct TorchWriteOptions {
  std::string archive_name;  ///< Folder inside the zip; empty -> the file name's stem.
  int protocol = 2;
};

/// The folder torch.save names inside the zip: the file name's stem ("zero/exp_avg.pt" -> "exp_avg").
std::string torch_archive_name(const std::string& file_name);

/// Writes `root` as a torch.save file. Storages are written once each (shared storages stay shared),
/// keys "0", "1", ... in pickling order.
base::Status write_torch_file(const std::string& path, const ValuePtr& root,
                              const TorchWriteOptions& options = {});
/// The bytes write_torch_file would write (options.archive_name must be set: there is no path).
base::Result<std::vector<std::byte>> torch_file_bytes(const ValuePtr& root, const TorchWriteOptions& options);

}  // namespace ucp::format
