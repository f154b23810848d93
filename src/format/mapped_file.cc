#include "ucp/format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ucp::format {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

base::Status open_error(const std::string& path, const char* what, int err) {
  std::string message = "cannot " + std::string(what) + " '" + path + "': " + errno_text(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return base::not_found(std::move(message));
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return base::resource_exhausted(std::move(message));
    default:
      return base::failed_precondition(std::move(message));
  }
}

// Closes the descriptor on every path out of open(): the mapping outlives it.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() { ::close(fd_); }

 private:
  int fd_;
};

}  // namespace

base::Result<std::shared_ptr<const MappedFile>> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: a FIFO must not hang open(); it is then refused as not a regular file. Regular
  // files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return open_error(path, "open", errno);
  FdCloser closer(fd);

  struct stat st {};
  if (::fstat(fd, &st) != 0) return open_error(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) {
    return base::invalid_argument("cannot map '" + path + "': not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0) {
    // mmap of length 0 is EINVAL; an empty file is simply an empty span.
    return std::shared_ptr<const MappedFile>(new MappedFile(path, nullptr, 0));
  }
  if (size > static_cast<std::uint64_t>(SIZE_MAX)) {
    return base::resource_exhausted("cannot map '" + path + "': " + std::to_string(size) +
                                    " bytes exceed the address space");
  }
  void* addr = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) return open_error(path, "mmap", errno);
  auto* file = new MappedFile(path, static_cast<const std::byte*>(addr), static_cast<std::size_t>(size));
  file->mapped_ = true;
  return std::shared_ptr<const MappedFile>(file);
}

MappedFile::MappedFile(std::string path, std::vector<std::byte> owned)
    : path_(std::move(path)), owned_(std::move(owned)) {
  data_ = owned_.data();
  size_ = owned_.size();
}

std::shared_ptr<const MappedFile> MappedFile::from_bytes(std::string name, std::vector<std::byte> bytes) {
  return std::shared_ptr<const MappedFile>(new MappedFile(std::move(name), std::move(bytes)));
}

base::Result<std::shared_ptr<const MappedFile>> MappedFile::view(std::shared_ptr<const MappedFile> parent,
                                                               std::uint64_t offset, std::uint64_t size,
                                                               std::string name) {
  if (!parent) return base::invalid_argument("MappedFile::view: no parent file given");
  if (offset > parent->size() || size > parent->size() - offset)
    return base::data_loss("'" + name + "': bytes [" + std::to_string(offset) + ", +" + std::to_string(size) +
                              ") run past the end of '" + parent->path() + "' (size " + std::to_string(parent->size()) + ")");
  auto* file = new MappedFile(std::move(name), parent->data_ == nullptr ? nullptr : parent->data_ + offset,
                              static_cast<std::size_t>(size));
  file->offset_in_parent_ = offset;
  file->parent_ = std::move(parent);
  return std::shared_ptr<const MappedFile>(file);
}

MappedFile::~MappedFile() {
  if (mapped_ && data_ != nullptr) {
    ::munmap(const_cast<std::byte*>(data_), size_);
  }
}

void MappedFile::advise_willneed(std::uint64_t offset, std::uint64_t len) const {
  if (!mapped_ || offset >= size_ || len == 0) return;
  const std::uint64_t end = std::min<std::uint64_t>(size_, offset + std::min<std::uint64_t>(len, size_ - offset));
  // madvise wants a page-aligned start; the mapping itself starts on a page boundary.
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = offset - offset % page;
  // Only a hint: failure changes nothing about correctness.
  (void)::madvise(const_cast<std::byte*>(data_) + start, static_cast<std::size_t>(end - start),
                  MADV_WILLNEED);
}

}  // namespace ucp::format
