// Helpers shared by the HDF5 writer and reader (private to ucp_hdf5): the HDF5 error stack as
// Status text, and an owning handle that closes an hid_t with its matching H5*close.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "ucp/base/status.h"

namespace ucp::format {

// The HDF5 error stack as one line: the outermost message (what failed) and the innermost (why,
// often with errno), e.g. "unable to create file: ... errno = 17, error message = 'File exists'".
inline herr_t collect_error(unsigned n, const H5E_error2_t* e, void* data) {
  auto* parts = static_cast<std::vector<std::string>*>(data);
  (void)n;
  if (e->desc && *e->desc) parts->push_back(e->desc);
  return 0;
}

inline std::string hdf5_error_text() {
  std::vector<std::string> parts;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &parts);  // innermost first
  H5Eclear2(H5E_DEFAULT);
  if (parts.empty()) return "HDF5 reported an error without a message";
  if (parts.size() == 1) return parts.front();
  return parts.back() + ": " + parts.front();
}

inline base::Status hdf5_error(const std::string& what, const std::string& path) {
  const std::string why = hdf5_error_text();
  const std::string msg = what + " '" + path + "' failed: " + why;
  // A full disk or a file-size limit shows up as errno text deep in the stack.
  if (why.find("No space left") != std::string::npos || why.find("Disk quota") != std::string::npos ||
      why.find("File too large") != std::string::npos)
    return base::resource_exhausted(msg);
  // What HDF5 says of a file cut short or not HDF5 at all: bad input, not an I/O failure.
  for (const char* corrupt : {"truncated file", "file signature not found", "bad object header", "bad symbol table"})
    if (why.find(corrupt) != std::string::npos) return base::data_loss(msg);
  return base::unavailable(msg);
}

// Owns one hid_t and closes it with the matching H5*close.
class Hid {
 public:
  using Closer = herr_t (*)(hid_t);
  Hid() = default;
  Hid(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Hid(Hid&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  ~Hid() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  herr_t reset() {
    herr_t r = 0;
    if (id_ >= 0 && closer_) r = closer_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

}  // namespace ucp::format
