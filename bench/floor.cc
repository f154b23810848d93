// ucp-bench-floor: what this machine can do at best, as the benchmark's yardstick.
//
//   ucp-bench-floor measure --dir DIR [--size 2GiB] [--reps 3] [--no-cold]   prints one JSON object
//   ucp-bench-floor evict FILE_OR_DIR...                     drops their pages from the page cache
//
// measure (best of --reps passes each; the first pass is reported too, as it pays for memory the
// system touches for the first time): memcpy bandwidth (one thread), then on DIR's filesystem a
// sequential write of --size bytes in 16 MiB pwrites (into the page cache: no fsync, which is how
// ucp-reshard writes), the fsync that follows, sequential reads of the file with read() and through mmap + memcpy (how
// ucp-reshard reads) with the file in the page cache, and the same reads cold. Cold means the
// file's pages were dropped with fdatasync + posix_fadvise(DONTNEED), which needs no privilege;
// whether /proc/sys/vm/drop_caches is writable is reported too. On a virtual disk the host may
// still cache what the guest dropped: cold numbers are then an upper bound.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "ucp/base/size.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ucp-bench-floor: " << what << ": " << std::strerror(errno) << "\n";
  std::exit(1);
}

constexpr std::size_t kChunk = 16u << 20;

/// memcpy bandwidth between two buffers already in memory; `first_touch` gets the bandwidth of
/// a copy into freshly allocated memory (page faults included: on a VM whose memory the host
/// hands out lazily these cost far more than the copy).
double memcpy_gbps(std::size_t bytes, double& first_touch) {
  std::vector<char> a(bytes, 1);
  char* fresh = static_cast<char*>(std::malloc(bytes));
  if (!fresh) die("malloc");
  const auto t0 = Clock::now();
  std::memcpy(fresh, a.data(), bytes);
  first_touch = static_cast<double>(bytes) / seconds_since(t0) / 1e9;
  std::vector<char> b(fresh, fresh + bytes);
  std::free(fresh);
  const int reps = 8;
  const auto t = Clock::now();
  for (int i = 0; i < reps; ++i) {
    a[static_cast<std::size_t>(i)] = static_cast<char>(i);
    std::memcpy(b.data(), a.data(), bytes);
  }
  const double s = seconds_since(t);
  volatile char sink = b[bytes / 2];
  (void)sink;
  return static_cast<double>(bytes) * reps / s / 1e9;
}

bool evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::fdatasync(fd);
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return rc == 0;
}

double read_gbps(const std::string& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open " + path);
  std::vector<char> buf(kChunk);
  const auto t = Clock::now();
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("read " + path);
    done += static_cast<std::uint64_t>(n);
  }
  const double s = seconds_since(t);
  ::close(fd);
  return static_cast<double>(size) / s / 1e9;
}

double mmap_read_gbps(const std::string& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open " + path);
  std::vector<char> buf(kChunk);
  const auto t = Clock::now();
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap " + path);
  ::madvise(p, size, MADV_SEQUENTIAL);
  const char* c = static_cast<const char*>(p);
  for (std::uint64_t off = 0; off < size; off += kChunk)
    std::memcpy(buf.data(), c + off, static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size - off)));
  ::munmap(p, size);
  const double s = seconds_since(t);
  ::close(fd);
  return static_cast<double>(size) / s / 1e9;
}

int measure(const std::string& dir, std::uint64_t size, bool cold, int reps) {
  size = std::max<std::uint64_t>(kChunk, size / kChunk * kChunk);
  double first_touch = 0;
  const double memcpy_bw = memcpy_gbps(static_cast<std::size_t>(std::min<std::uint64_t>(size, 256u << 20)), first_touch);
  const std::string path = (std::filesystem::path(dir) / ".ucp-bench-floor.tmp").string();
  std::vector<char> buf(kChunk);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 131 + 7);

  // Best of `reps` passes each: a floor is what the machine can do, not what it did while
  // something else was busy.
  double write_s = 1e30, write_fsync_s = 1e30, first_write_s = 0;
  for (int rep = 0; rep < reps; ++rep) {
    std::filesystem::remove(path);
    ::sync();  // start without others' dirty pages being written back
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("create " + path);
    auto t = Clock::now();
    for (std::uint64_t off = 0; off < size; off += kChunk) {
      const ssize_t n = ::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(off));
      if (n != static_cast<ssize_t>(buf.size())) die("write " + path);
    }
    const double w = seconds_since(t);
    t = Clock::now();
    if (::fsync(fd) != 0) die("fsync " + path);
    const double f = seconds_since(t);
    ::close(fd);
    if (rep == 0) first_write_s = w;
    write_s = std::min(write_s, w);
    write_fsync_s = std::min(write_fsync_s, w + f);
  }

  double read_warm = 0, mmap_warm = 0, mmap_warm_first = 0, read_cold = -1, mmap_cold = -1;
  for (int rep = 0; rep < reps; ++rep) {
    read_warm = std::max(read_warm, read_gbps(path, size));
    const double m = mmap_read_gbps(path, size);
    if (rep == 0) mmap_warm_first = m;
    mmap_warm = std::max(mmap_warm, m);
  }
  bool evicted = false;
  if (cold) {
    for (int rep = 0; rep < reps; ++rep) {
      evicted = evict(path);
      if (!evicted) break;
      read_cold = std::max(read_cold, read_gbps(path, size));
      if (!evict(path)) break;
      mmap_cold = std::max(mmap_cold, mmap_read_gbps(path, size));
    }
  }
  std::filesystem::remove(path);
  const bool drop_caches = ::access("/proc/sys/vm/drop_caches", W_OK) == 0;

  auto num = [](double v) {
    char b[32];
    if (v < 0) return std::string("null");
    std::snprintf(b, sizeof b, "%.3f", v);
    return std::string(b);
  };
  const double gb = static_cast<double>(size) / 1e9;
  std::cout << "{\"dir\": \"" << dir << "\", \"bytes\": " << size << ", \"memcpy_GBps\": " << num(memcpy_bw)
            << ", \"memcpy_first_touch_GBps\": " << num(first_touch) << ", \"write_cache_first_GBps\": "
            << num(gb / first_write_s) << ", \"mmap_read_warm_first_GBps\": " << num(mmap_warm_first)
            << ", \"write_cache_GBps\": " << num(gb / write_s) << ", \"write_fsync_GBps\": " << num(gb / write_fsync_s)
            << ", \"read_warm_GBps\": " << num(read_warm) << ", \"mmap_read_warm_GBps\": " << num(mmap_warm)
            << ", \"read_cold_GBps\": " << num(read_cold) << ", \"mmap_read_cold_GBps\": " << num(mmap_cold)
            << ", \"cold_method\": \"" << (evicted ? "posix_fadvise(DONTNEED)" : "none") << "\""
            << ", \"drop_caches_writable\": " << (drop_caches ? "true" : "false") << ", \"reps\": " << reps << "}"
            << std::endl;
  return 0;
}

int evict_paths(const std::vector<std::string>& paths) {
  int failures = 0;
  for (const auto& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec))
        if (e.is_regular_file() && !evict(e.path().string())) ++failures;
    } else if (!evict(p)) {
      ++failures;
    }
  }
  if (failures) std::cerr << "ucp-bench-floor: could not evict " << failures << " file(s)\n";
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Machine floor for the ucp-reshard benchmark"};
  app.require_subcommand(1);
  std::string dir = ".", size_text = "2GiB";
  bool no_cold = false;
  int reps = 3;
  auto* m = app.add_subcommand("measure", "memcpy and sequential file bandwidth, one JSON line");
  m->add_option("--dir", dir, "Directory on the filesystem to measure")->capture_default_str();
  m->add_option("--size", size_text, "Bytes written and read")->capture_default_str();
  m->add_flag("--no-cold", no_cold, "Skip the cold-cache reads");
  m->add_option("--reps", reps, "Passes of each measurement; the best is reported")->capture_default_str()->check(CLI::Range(1, 100));
  std::vector<std::string> paths;
  auto* e = app.add_subcommand("evict", "drop files (or every file under directories) from the page cache");
  e->add_option("paths", paths)->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : 2;
  }
  if (m->parsed()) {
    auto size = ucp::base::parse_size(size_text);
    if (!size.ok()) {
      std::cerr << "ucp-bench-floor: " << size.status().to_string() << "\n";
      return 2;
    }
    return measure(dir, *size, !no_cold, reps);
  }
  return evict_paths(paths);
}
