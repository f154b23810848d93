#include "ucp/format/torch_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "ucp/base/checked_math.h"
#include "ucp/format/zip_writer.h"

namespace ucp::format {
namespace {

using base::Result;
using base::Status;
using Kind = Value::Kind;

constexpr std::string_view kPickleName = "data.pkl";

// "<archive>/data.pkl" with no other '/': the record torch.load reads first.
Result<const ZipRecord*> find_pickle(const ZipReader& zip) {
  const ZipRecord* found = nullptr;
  for (const ZipRecord& r : zip.records()) {
    const std::string& n = r.name;
    if (n.size() <= kPickleName.size() + 1 || n.compare(n.size() - kPickleName.size(), kPickleName.size(), kPickleName) != 0)
      continue;
    const std::size_t slash = n.size() - kPickleName.size() - 1;
    if (n[slash] != '/' || n.find('/') != slash) continue;
    if (found)
      return base::data_loss("expected one '<archive>/data.pkl' record, found '" + found->name + "' and '" + n + "'");
    found = &r;
  }
  if (!found) return base::data_loss("no '<archive>/data.pkl' record: not a torch.save zip file");
  return found;
}

// torch.save's format before 1.6 (still written with _use_new_zipfile_serialization=False) starts
// with a pickled magic number: PROTO n, LONG1 of 10 bytes, 0x1950a86a20f9469cfc6c little-endian.
bool is_legacy_torch_save(std::span<const std::byte> bytes) {
  static constexpr unsigned char kMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (bytes.size() < 2 + sizeof kMagic || bytes[0] != std::byte{0x80}) return false;
  return std::memcmp(bytes.data() + 2, kMagic, sizeof kMagic) == 0;
}

// Resolves torch.save's persistent ids ('storage', torch.<X>Storage, key, location, numel) to
// storages viewing the mapped records. One Storage (and one Value) per key, as torch.load shares.
class StorageResolver {
 public:
  StorageResolver(const ZipReader& zip, std::string archive) : zip_(zip), archive_(std::move(archive)) {}

  Result<ValuePtr> operator()(const ValuePtr& pid) {
    if (pid->kind != Kind::kTuple || pid->items.size() != 5)
      return base::data_loss("persistent id is a " + pid->type_name() + " of " + std::to_string(pid->items.size()) +
                             " items, expected ('storage', class, key, location, numel)");
    const auto& a = pid->items;
    if (a[0]->kind != Kind::kStr || a[0]->str != "storage")
      return base::data_loss("persistent id does not start with 'storage'");
    // Typed storages are torch.<X>Storage; torch.UntypedStorage pickles as torch.storage.UntypedStorage.
    const bool untyped = a[1]->kind == Kind::kGlobal && a[1]->global.name == "UntypedStorage" &&
                         (a[1]->global.module == "torch" || a[1]->global.module == "torch.storage");
    if (a[1]->kind != Kind::kGlobal || (a[1]->global.module != "torch" && !untyped))
      return base::data_loss("persistent id storage class is a " + a[1]->type_name() + ", expected torch.<X>Storage");
    if (a[2]->kind != Kind::kStr || a[3]->kind != Kind::kStr || a[4]->kind != Kind::kInt || a[4]->i < 0)
      return base::data_loss("persistent id key/location/numel are " + a[2]->type_name() + "/" + a[3]->type_name() +
                             "/" + a[4]->type_name() + ", expected str/str/non-negative int");
    const std::string& cls = a[1]->global.name;
    std::optional<base::DType> dtype = base::dtype_from_torch_storage_class(cls);
    if (untyped) dtype = base::DType::kU8;  // numel is then a byte count
    if (!dtype) return base::unimplemented("storage class torch." + cls + " is not supported");
    const std::string& key = a[2]->str;
    const auto numel = static_cast<std::uint64_t>(a[4]->i);

    if (auto it = by_key_.find(key); it != by_key_.end()) {
      const Storage& s = *it->second->storage;
      if (s.dtype != *dtype || s.numel != numel)
        return base::data_loss("storage '" + key + "' is referenced as torch." + cls + " of " + std::to_string(numel) +
                               " elements and as torch." + std::string(base::torch_storage_class(s.dtype)) + " of " +
                               std::to_string(s.numel));
      return it->second;
    }
    const std::string record_name = archive_ + "/data/" + key;
    const ZipRecord* record = zip_.find(record_name);
    if (!record) return base::not_found("storage '" + key + "': no record '" + record_name + "'");
    auto nbytes = base::checked_mul(numel, base::dtype_size(*dtype));
    // torch writes exactly nbytes; a longer record is accepted (only its prefix is the storage).
    if (!nbytes || *nbytes > record->size)
      return base::data_loss("storage '" + key + "' (torch." + cls + " of " + std::to_string(numel) +
                             " elements) needs " + (nbytes ? std::to_string(*nbytes) : std::string("> 2^64")) +
                             " bytes, record '" + record_name + "' holds " + std::to_string(record->size));
    UCP_ASSIGN_OR_RETURN(std::span<const std::byte> bytes, zip_.view(*record, 0, *nbytes));
    auto storage = std::make_shared<Storage>();
    storage->dtype = *dtype;
    storage->numel = numel;
    storage->key = key;
    storage->location = a[3]->str;
    storage->bytes = bytes;
    storage->owner = zip_.file();
    auto v = std::make_shared<Value>();
    v->kind = Kind::kStorage;
    v->storage = std::move(storage);
    by_key_.emplace(key, v);
    return v;
  }

 private:
  const ZipReader& zip_;
  std::string archive_;
  std::unordered_map<std::string, ValuePtr> by_key_;
};

}  // namespace

std::string torch_archive_name(const std::string& file_name) { return std::filesystem::path(file_name).stem().string(); }

Result<TorchFile> TorchFile::parse(std::shared_ptr<const MappedFile> file, const PickleLimits& limits) {
  if (!file) return base::invalid_argument("TorchFile::parse: no file given");
  const std::string where = "'" + file->path() + "'";
  if (is_legacy_torch_save(file->bytes()))
    return base::unimplemented(where + " is in torch.save's legacy (non-zip) format, which DeepSpeed writes when its "
                               "config sets checkpoint.checkpoint_serialization: false; only the zip format (the "
                               "default) is supported");
  UCP_ASSIGN_OR_RETURN(ZipReader zip, ZipReader::open(std::move(file)));  // its errors name the file
  auto pickle = find_pickle(zip);
  if (!pickle.ok()) return std::move(pickle).take_status().annotate(where);
  const ZipRecord& record = **pickle;
  std::string archive = record.name.substr(0, record.name.size() - kPickleName.size() - 1);
  UCP_ASSIGN_OR_RETURN(std::span<const std::byte> data, zip.view(record, 0, record.size));
  // The pickle is small and decides how every byte is interpreted: check its CRC (torch writes 0
  // when CRCs are disabled). Storage records are not checksummed here: that would read them all.
  if (record.crc32 != 0) UCP_RETURN_IF_ERROR(zip.verify_crc(record));
  // torch >= 2.1 records the byte order of the machine that saved the file; storages are raw bytes
  // in that order, and every reader and writer here is little-endian.
  if (const ZipRecord* order = zip.find(archive + "/byteorder")) {
    UCP_ASSIGN_OR_RETURN(std::span<const std::byte> text, zip.view(*order, 0, std::min<std::uint64_t>(order->size, 16)));
    const std::string_view value(reinterpret_cast<const char*>(text.data()), text.size());
    if (value != "little")
      return base::unimplemented(where + ": saved on a '" + std::string(value) +
                                 "'-endian machine (record '" + order->name + "'); only little-endian torch files are supported");
  }
  StorageResolver resolver(zip, archive);
  PersistentLoad load = [&resolver](const ValuePtr& pid) { return resolver(pid); };
  auto root = read_pickle(data, load, limits);
  if (!root.ok()) return std::move(root).take_status().annotate(where + ": record '" + record.name + "'");
  return TorchFile(std::move(zip), std::move(archive), std::move(*root));
}

Result<TorchFile> TorchFile::open(const std::string& path, const PickleLimits& limits) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  return parse(std::move(file), limits);
}

namespace {

// The records of a torch.save file holding `root`, handed to `sink` (which writes them to a file
// or into memory). `where` names the output in errors.
template <typename Sink>
auto with_torch_records(const std::string& where, std::string archive, const ValuePtr& root, const TorchWriteOptions& options,
                        Sink sink) -> decltype(sink(std::span<const ZipBlob>{})) {
  if (archive.empty()) archive = "archive";
  if (archive.find('/') != std::string::npos)
    return base::invalid_argument("torch archive name '" + archive + "' must not contain '/'");

  std::vector<std::shared_ptr<Storage>> storages;  // index = key
  StorageKeyFn key_fn = [&storages](const std::shared_ptr<Storage>& s) {
    storages.push_back(s);
    return std::to_string(storages.size() - 1);
  };
  PickleWriteOptions pickle_options;
  pickle_options.protocol = options.protocol;
  auto pickle = write_pickle(root, key_fn, pickle_options);
  if (!pickle.ok()) return std::move(pickle).take_status().annotate("writing " + where);

  static constexpr std::string_view kVersion = "3\n";
  static constexpr std::string_view kByteOrder = "little";
  auto as_bytes = [](std::string_view s) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()); };

  // Record order as torch.save: data.pkl, data/<key> in key order, version; then byteorder, which
  // newer torch writes and torch 1.13 ignores.
  std::vector<ZipBlob> blobs;
  blobs.push_back({archive + "/data.pkl", std::span<const std::byte>(pickle->data(), pickle->size())});
  for (std::size_t k = 0; k < storages.size(); ++k) {
    const Storage& s = *storages[k];
    auto nbytes = base::checked_mul(s.numel, base::dtype_size(s.dtype));
    if (!nbytes || *nbytes > s.bytes.size())
      return base::invalid_argument("writing " + where + ": storage " + std::to_string(k) + " has " +
                                    std::to_string(s.bytes.size()) + " bytes, expected " + std::to_string(s.numel) +
                                    " x " + std::to_string(base::dtype_size(s.dtype)));
    blobs.push_back({archive + "/data/" + std::to_string(k), s.bytes.first(static_cast<std::size_t>(*nbytes))});
  }
  blobs.push_back({archive + "/version", as_bytes(kVersion)});
  blobs.push_back({archive + "/byteorder", as_bytes(kByteOrder)});
  return sink(std::span<const ZipBlob>(blobs));
}

}  // namespace

Status write_torch_file(const std::string& path, const ValuePtr& root, const TorchWriteOptions& options) {
  std::string archive = options.archive_name;
  if (archive.empty()) archive = torch_archive_name(path);
  return with_torch_records("'" + path + "'", archive, root, options,
                            [&](std::span<const ZipBlob> blobs) { return write_zip_file(path, blobs, 64); });
}

Result<std::vector<std::byte>> torch_file_bytes(const ValuePtr& root, const TorchWriteOptions& options) {
  if (options.archive_name.empty()) return base::invalid_argument("torch_file_bytes: no archive name given");
  return with_torch_records("torch file '" + options.archive_name + "'", options.archive_name, root, options,
                            [](std::span<const ZipBlob> blobs) { return zip_file_bytes(blobs, 64); });
}

}  // namespace ucp::format
