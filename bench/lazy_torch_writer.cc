#include "lazy_torch_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

#include "ucp/base/checked_math.h"
#include "ucp/format/crc32.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/zip_writer.h"

namespace ucp::bench {

std::shared_ptr<format::Storage> LazyStorages::make(base::DType dtype, std::uint64_t numel, FillFn fill,
                                                    std::string location) {
  auto s = std::make_shared<format::Storage>();
  s->dtype = dtype;
  s->numel = numel;
  s->location = std::move(location);
  fills_.emplace(s.get(), std::move(fill));
  return s;
}

const FillFn* LazyStorages::find(const format::Storage* s) const {
  auto it = fills_.find(s);
  return it == fills_.end() ? nullptr : &it->second;
}

namespace {

base::Status io_error(const std::string& path, std::string_view what, int err) {
  std::string msg = "'" + path + "': " + std::string(what) + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return base::resource_exhausted(std::move(msg));
  return base::unavailable(std::move(msg));
}

class File {
 public:
  explicit File(std::string path) : path_(std::move(path)) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  base::Status open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return io_error(path_, "cannot create", errno);
    return {};
  }
  base::Status pwrite_all(std::span<const std::byte> data, std::uint64_t offset) {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error(path_, "write at offset " + std::to_string(offset) + " failed", errno);
      }
      if (n == 0) return io_error(path_, "write at offset " + std::to_string(offset) + " wrote nothing", EIO);
      data = data.subspan(static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
    }
    return {};
  }
  base::Status close() {
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return io_error(path_, "close failed", errno);
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

base::Result<WriteStats> write_lazy_torch_file(const std::string& path, const format::ValuePtr& root,
                                               const LazyStorages& storages, std::size_t chunk_bytes) {
  std::string archive = std::filesystem::path(path).stem().string();
  if (archive.empty()) archive = "archive";

  std::vector<std::shared_ptr<format::Storage>> order;  // index = key
  format::StorageKeyFn key_fn = [&order](const std::shared_ptr<format::Storage>& s) {
    order.push_back(s);
    return std::to_string(order.size() - 1);
  };
  auto pickle = format::write_pickle(root, key_fn);
  if (!pickle.ok()) return std::move(pickle).take_status().annotate("writing '" + path + "'");

  struct Record {
    std::string name;
    std::uint64_t size = 0;
    const format::Storage* storage = nullptr;  // null: an in-memory record
    std::span<const std::byte> data;
  };
  static constexpr std::string_view kVersion = "3\n";
  std::vector<Record> records;
  records.push_back({archive + "/data.pkl", pickle->size(), nullptr, {pickle->data(), pickle->size()}});
  // torch.save writes the storage records in sorted key order ("0", "1", "10", "11", ..., "2").
  std::vector<std::pair<std::string, const format::Storage*>> keyed;
  for (std::size_t k = 0; k < order.size(); ++k) keyed.emplace_back(std::to_string(k), order[k].get());
  std::sort(keyed.begin(), keyed.end());
  for (const auto& [key, s] : keyed) {
    if (!storages.find(s))
      return base::internal_error("writing '" + path + "': storage " + key + " has no generator");
    auto nbytes = base::checked_mul(s->numel, base::dtype_size(s->dtype));
    if (!nbytes) return base::invalid_argument("writing '" + path + "': storage " + key + " overflows 64 bits");
    records.push_back({archive + "/data/" + key, *nbytes, s, {}});
  }
  records.push_back({archive + "/version", kVersion.size(), nullptr, as_bytes(kVersion)});

  std::vector<format::ZipEntrySpec> specs;
  for (const auto& r : records) specs.push_back({r.name, r.size});
  UCP_RETURN_IF_ERROR(format::check_zip_entries(specs, 64));
  const format::ZipLayout layout = format::plan_zip_layout(specs, 64);

  File file(path);
  UCP_RETURN_IF_ERROR(file.open());
  std::vector<std::byte> buffer;
  std::vector<std::uint32_t> crcs(records.size(), 0);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const std::uint64_t base_offset = layout.entries[i].data_offset;
    std::uint32_t crc = 0;
    if (!r.storage) {
      crc = format::crc32_update(0, r.data);
      UCP_RETURN_IF_ERROR(file.pwrite_all(r.data, base_offset));
    } else {
      const std::size_t esize = base::dtype_size(r.storage->dtype);
      const std::size_t per_chunk = std::max<std::size_t>(1, chunk_bytes / esize);
      const std::uint64_t want = std::min<std::uint64_t>(per_chunk * esize, r.size);
      if (buffer.size() < want) buffer.resize(static_cast<std::size_t>(want));
      const FillFn& fill = *storages.find(r.storage);
      for (std::uint64_t first = 0; first < r.storage->numel;) {
        const std::uint64_t n = std::min<std::uint64_t>(r.storage->numel - first, buffer.size() / esize);
        std::span<std::byte> chunk(buffer.data(), static_cast<std::size_t>(n * esize));
        fill(first, chunk);
        crc = format::crc32_update(crc, chunk);
        UCP_RETURN_IF_ERROR(file.pwrite_all(chunk, base_offset + first * esize));
        first += n;
      }
    }
    crcs[i] = crc;
    const std::vector<std::byte> header = format::zip_local_header(layout, i, crc);
    UCP_RETURN_IF_ERROR(file.pwrite_all(header, layout.entries[i].header_offset));
  }
  const std::vector<std::byte> directory = format::zip_central_directory(layout, crcs);
  UCP_RETURN_IF_ERROR(file.pwrite_all(directory, layout.central_directory_offset));
  UCP_RETURN_IF_ERROR(file.close());
  return WriteStats{layout.total_size};
}

}  // namespace ucp::bench
