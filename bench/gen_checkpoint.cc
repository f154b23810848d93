// ucp-bench-gen: synthesises a DeepSpeed checkpoint of any size in the exact layout DeepSpeed
// v0.14.5 writes (ZeRO-1/2/3 and BF16_Optimizer; fp32/fp16/bf16; any DP size), for benchmarks and
// for tests that need more shapes than the real fixtures have.
//
// The model is transformer shaped, like the fixtures' "gpt": position embedding on the root, token
// embedding, per-layer LayerNorms / fused QKV / projection / MLP, final LayerNorm, a head tied to
// the token embedding, plus (optional) a frozen adapter and integer / float buffers. Parameter groups
// as in the fixtures: weights (>= 2 dims, decay) and the rest (no decay), or one group.
//
// Values are pseudo-random and deterministic (synth_values.h): fp32 masters and Adam moments are
// functions of (seed, name, element), model weights are the masters rounded to the model dtype.
// Files are streamed (lazy_torch_writer.h): memory stays at a few chunks, whatever the size.
// `--expect FILE` also writes what a correct fp32 consolidation must produce, computed from the
// value functions directly (not from the partitions), as a safetensors file.
//
// The partition math follows the format spec (section 3): ZeRO-1/2 and BF16_Optimizer flatten each
// group, pad to a multiple of 2*dp and cut dp equal partitions (ZeRO-1/2 save them without the
// padding, BF16 with it); ZeRO-3 slices every parameter into ceil(n/dp) pieces and groups them into
// sub-groups by sub_group_size.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lazy_torch_writer.h"
#include "synth_values.h"
#include "ucp/base/convert.h"
#include "ucp/base/dtype.h"
#include "ucp/base/size.h"
#include "ucp/base/status.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/value.h"

namespace ucp::bench {
namespace {

using base::DType;
using base::Result;
using base::Status;
using format::Value;
using format::ValuePtr;

constexpr const char* kDsVersion = "0.14.5+eb07d41f";

// ------------------------------------------------------------------------------------ options

struct Options {
  std::string out;
  std::string expect;
  std::string params_text = "505M";
  std::int64_t layers = 0, hidden = 0, vocab = 0, seq = 0;
  int stage = 2;
  std::string precision = "bf16";
  bool bf16_optimizer = false;
  int dp = 4;
  std::uint64_t seed = 1234;
  int steps = 100;
  std::string tag;
  int groups = 0;  // 0: 1 for ZeRO-3 (the fixtures' gpt1g, DeepSpeed's own timings), else 2
  double sub_group_size = 1e9;
  bool frozen = true;
  bool extra_buffers = true;
  int jobs = 0;
  std::string chunk = "32MiB";
  bool overwrite = false;
};

Result<std::uint64_t> parse_count(const std::string& text) {
  double mult = 1;
  std::string num = text;
  if (!num.empty()) {
    const char last = static_cast<char>(std::toupper(static_cast<unsigned char>(num.back())));
    if (last == 'K') mult = 1e3;
    else if (last == 'M') mult = 1e6;
    else if (last == 'B' || last == 'G') mult = 1e9;
    else if (last == 'T') mult = 1e12;
    if (mult != 1) num.pop_back();
  }
  char* end = nullptr;
  const double v = std::strtod(num.c_str(), &end);
  if (num.empty() || end != num.c_str() + num.size() || !(v > 0) || v * mult > 1e13)
    return base::invalid_argument("--params '" + text + "': expected a positive count such as 505M, 1.5B or 2000000");
  return static_cast<std::uint64_t>(std::llround(v * mult));
}

// ------------------------------------------------------------------------------------ model

struct ParamInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t numel = 0;
  bool trainable = true;
  ValueStream master, exp_avg, exp_avg_sq;
};

enum class BufferKind { kCausalMask, kPositionIds, kInvFreq };

struct BufferInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype;
  BufferKind kind;
  std::uint64_t numel = 0;
};

struct SdEntry {
  enum Kind { kParam, kBuffer, kAlias } kind;
  int index;  // param (kParam, kAlias: the source) or buffer
  std::string name;
};

struct Model {
  std::int64_t layers = 0, hidden = 0, vocab = 0, seq = 0;
  std::vector<ParamInfo> params;  // named_parameters() order (tied names once)
  std::vector<BufferInfo> buffers;
  std::vector<SdEntry> state_dict;  // module.state_dict() order
  std::vector<std::string> module_prefixes;  // state_dict()._metadata keys
  std::vector<std::pair<std::string, std::string>> shared;  // alias -> source
  std::vector<std::vector<int>> groups;  // trainable params per optimizer param group
  std::vector<double> weight_decay;
  std::uint64_t total_params() const {
    std::uint64_t n = 0;
    for (const auto& p : params) n += p.numel;
    return n;
  }
};

std::uint64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ValueStream master_stream(std::uint64_t seed, const std::string& name) {
  ValueStream v{stream_key(seed, name, Stream::kMaster), -0.0625f, 0.125f};
  const bool norm = name.find("ln") != std::string::npos;
  if (norm && ends_with(name, ".weight")) v.lo = 0.875f, v.span = 0.25f;  // LayerNorm gains near 1
  else if (ends_with(name, ".bias")) v.lo = -0.015625f, v.span = 0.03125f;
  return v;
}

std::uint64_t layer_params(std::int64_t h) { return static_cast<std::uint64_t>(12 * h * h + 13 * h); }

/// Shape for about `target` parameters: the widest hidden size whose depth is at least hidden/32
/// (GPT-like proportions; 505M gives hidden 1024, 36 layers, vocab 50257, seq 1024).
void choose_shape(std::uint64_t target, bool frozen, Options& o) {
  static constexpr std::int64_t kHidden[] = {4096, 2048, 1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 16};
  for (std::int64_t h : kHidden) {
    const std::int64_t vocab = o.vocab > 0 ? o.vocab : (h >= 512 ? 50257 : 16 * h + 1);
    const std::int64_t seq = o.seq > 0 ? o.seq : std::min<std::int64_t>(1024, 4 * h);
    if (o.hidden > 0 && h != o.hidden) continue;
    const double fixed = static_cast<double>(vocab * h + seq * h + 2 * h + (frozen ? h * h + h : 0));
    const double layers = std::round((static_cast<double>(target) - fixed) / static_cast<double>(layer_params(h)));
    if (o.hidden > 0 || layers >= static_cast<double>(h / 32) || h == 16) {
      o.hidden = h;
      o.vocab = vocab;
      o.seq = seq;
      if (o.layers <= 0) o.layers = std::max<std::int64_t>(1, static_cast<std::int64_t>(layers));
      return;
    }
  }
}

Model build_model(const Options& o, DType model_dtype) {
  Model m;
  m.layers = o.layers, m.hidden = o.hidden, m.vocab = o.vocab, m.seq = o.seq;
  const std::int64_t h = o.hidden;
  auto add_param = [&](const std::string& name, std::vector<std::int64_t> shape, bool trainable = true) {
    ParamInfo p;
    p.name = name;
    p.shape = std::move(shape);
    p.numel = numel_of(p.shape);
    p.trainable = trainable;
    p.master = master_stream(o.seed, name);
    p.exp_avg = {stream_key(o.seed, name, Stream::kExpAvg), -0.001f, 0.002f};
    p.exp_avg_sq = {stream_key(o.seed, name, Stream::kExpAvgSq), 0.0f, 1e-6f};
    m.state_dict.push_back({SdEntry::kParam, static_cast<int>(m.params.size()), name});
    m.params.push_back(std::move(p));
  };
  auto add_buffer = [&](const std::string& name, std::vector<std::int64_t> shape, DType dtype, BufferKind kind) {
    BufferInfo b{name, std::move(shape), dtype, kind, 0};
    b.numel = numel_of(b.shape);
    m.state_dict.push_back({SdEntry::kBuffer, static_cast<int>(m.buffers.size()), name});
    m.buffers.push_back(std::move(b));
  };
  // Root: own parameters, own buffers, then the children (torch's state_dict order).
  m.module_prefixes.push_back("");
  add_param("wpe", {o.seq, h});
  add_buffer("causal_mask", {o.seq, o.seq}, DType::kBool, BufferKind::kCausalMask);
  if (o.extra_buffers) {
    add_buffer("position_ids", {1, o.seq}, DType::kI64, BufferKind::kPositionIds);
    add_buffer("inv_freq", {std::max<std::int64_t>(1, h / 2)}, model_dtype, BufferKind::kInvFreq);
  }
  m.module_prefixes.push_back("wte");
  add_param("wte.weight", {o.vocab, h});
  m.module_prefixes.push_back("blocks");
  for (std::int64_t i = 0; i < o.layers; ++i) {
    const std::string b = "blocks." + std::to_string(i);
    m.module_prefixes.push_back(b);
    const std::pair<const char*, std::int64_t> linears[] = {{"ln1", 0}, {"qkv", 3}, {"proj", 1}, {"ln2", 0}, {"fc", 4}, {"fc_out", -4}};
    for (const auto& [mod, out] : linears) {
      const std::string prefix = b + "." + mod;
      m.module_prefixes.push_back(prefix);
      if (out == 0) {  // LayerNorm
        add_param(prefix + ".weight", {h});
        add_param(prefix + ".bias", {h});
      } else if (out > 0) {
        add_param(prefix + ".weight", {out * h, h});
        add_param(prefix + ".bias", {out * h});
      } else {
        add_param(prefix + ".weight", {h, -out * h});
        add_param(prefix + ".bias", {h});
      }
    }
  }
  m.module_prefixes.push_back("ln_f");
  add_param("ln_f.weight", {h});
  add_param("ln_f.bias", {h});
  if (o.frozen) {
    m.module_prefixes.push_back("frozen_adapter");
    add_param("frozen_adapter.weight", {h, h}, false);
    add_param("frozen_adapter.bias", {h}, false);
  }
  m.module_prefixes.push_back("lm_head");
  m.state_dict.push_back({SdEntry::kAlias, 1, "lm_head.weight"});  // tied to wte.weight
  m.shared.emplace_back("lm_head.weight", "wte.weight");

  const int n_groups = o.groups > 0 ? o.groups : (o.stage == 3 ? 1 : 2);
  m.groups.assign(static_cast<std::size_t>(n_groups), {});
  for (int i = 0; i < static_cast<int>(m.params.size()); ++i) {
    const ParamInfo& p = m.params[static_cast<std::size_t>(i)];
    if (!p.trainable) continue;
    const int g = (n_groups == 1 || p.shape.size() >= 2) ? 0 : 1;
    m.groups[static_cast<std::size_t>(g)].push_back(i);
  }
  m.weight_decay = n_groups == 1 ? std::vector<double>{0.01} : std::vector<double>{0.01, 0.0};
  return m;
}

// ------------------------------------------------------------------------------------ sources

/// A run of a storage: `count` elements of param `param`'s stream from element `start`, or zeros
/// (param < 0: DeepSpeed's alignment / partition padding).
struct Segment {
  int param;
  std::uint64_t start;
  std::uint64_t count;
};

/// Fills a storage made of segments of one stream, converted to the storage dtype.
class SegmentFill {
 public:
  SegmentFill(const Model& m, Stream stream, DType dtype, std::vector<Segment> segs)
      : model_(&m), stream_(stream), dtype_(dtype), segs_(std::move(segs)) {
    ends_.reserve(segs_.size());
    std::uint64_t e = 0;
    for (const auto& s : segs_) ends_.push_back(e += s.count);
  }
  std::uint64_t numel() const { return ends_.empty() ? 0 : ends_.back(); }

  void operator()(std::uint64_t first, std::span<std::byte> out) const {
    const std::size_t esize = base::dtype_size(dtype_);
    std::uint64_t n = out.size() / esize;
    std::size_t si = static_cast<std::size_t>(std::upper_bound(ends_.begin(), ends_.end(), first) - ends_.begin());
    std::byte* dst = out.data();
    while (n > 0 && si < segs_.size()) {
      const Segment& s = segs_[si];
      const std::uint64_t seg_begin = ends_[si] - s.count;
      const std::uint64_t off = first - seg_begin;
      const std::uint64_t take = std::min(n, s.count - off);
      if (s.param < 0) {
        std::memset(dst, 0, static_cast<std::size_t>(take * esize));
      } else {
        emit(stream_of(model_->params[static_cast<std::size_t>(s.param)]), s.start + off, dst, take);
      }
      dst += take * esize;
      first += take;
      n -= take;
      ++si;
    }
  }

 private:
  const ValueStream& stream_of(const ParamInfo& p) const {
    switch (stream_) {
      case Stream::kExpAvg: return p.exp_avg;
      case Stream::kExpAvgSq: return p.exp_avg_sq;
      default: return p.master;
    }
  }
  void emit(const ValueStream& v, std::uint64_t first, std::byte* dst, std::uint64_t n) const {
    if (dtype_ == DType::kF32) {
      synth_fill(v, first, reinterpret_cast<float*>(dst), static_cast<std::size_t>(n));
      return;
    }
    thread_local std::vector<float> scratch(1 << 16);
    const std::size_t esize = base::dtype_size(dtype_);
    while (n > 0) {
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, scratch.size()));
      synth_fill(v, first, scratch.data(), k);
      base::convert_elements(DType::kF32, reinterpret_cast<const std::byte*>(scratch.data()), dtype_, dst, k);
      dst += k * esize;
      first += k;
      n -= k;
    }
  }

  const Model* model_;
  Stream stream_;
  DType dtype_;
  std::vector<Segment> segs_;
  std::vector<std::uint64_t> ends_;
};

/// Element e of a buffer, as a double (converted to the buffer dtype by the caller).
double buffer_element(const Model& m, const BufferInfo& b, std::uint64_t e) {
  switch (b.kind) {
    case BufferKind::kCausalMask: {
      const std::uint64_t row = e / static_cast<std::uint64_t>(m.seq), col = e % static_cast<std::uint64_t>(m.seq);
      return col <= row ? 1.0 : 0.0;
    }
    case BufferKind::kPositionIds: return static_cast<double>(e);
    case BufferKind::kInvFreq:
      return 1.0 / std::pow(10000.0, 2.0 * static_cast<double>(e) / static_cast<double>(m.hidden));
  }
  return 0;
}

void fill_buffer(const Model& m, const BufferInfo& b, std::uint64_t first, std::span<std::byte> out) {
  const std::size_t esize = base::dtype_size(b.dtype);
  const std::uint64_t n = out.size() / esize;
  for (std::uint64_t i = 0; i < n; ++i) {
    const double v = buffer_element(m, b, first + i);
    std::byte* dst = out.data() + i * esize;
    if (b.dtype == DType::kBool) {
      *dst = std::byte{static_cast<unsigned char>(v != 0)};
    } else if (b.dtype == DType::kI64) {
      const std::int64_t x = static_cast<std::int64_t>(v);
      std::memcpy(dst, &x, sizeof x);
    } else {
      const float f = static_cast<float>(v);
      base::convert_elements(DType::kF32, reinterpret_cast<const std::byte*>(&f), b.dtype, dst, 1);
    }
  }
}

// ------------------------------------------------------------------------------------ partitions

std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }
std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

/// ZeRO-1/2 / BF16_Optimizer flattening of one param group.
struct FlatGroup {
  std::vector<int> params;
  std::vector<std::uint64_t> offsets;  // of each param in the flat buffer
  std::uint64_t total = 0;             // T_g
  std::uint64_t padded = 0;            // P_g = align(T_g, 2*dp)
  std::uint64_t partition = 0;         // S_g = P_g / dp

  /// Segments covering flat elements [lo, hi) (params, then padding zeros).
  std::vector<Segment> segments(const Model& m, std::uint64_t lo, std::uint64_t hi) const {
    std::vector<Segment> out;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const std::uint64_t b = offsets[i], e = b + m.params[static_cast<std::size_t>(params[i])].numel;
      const std::uint64_t s = std::max(b, lo), t = std::min(e, hi);
      if (s < t) out.push_back({params[i], s - b, t - s});
    }
    const std::uint64_t pad_lo = std::max(total, lo);
    if (pad_lo < hi) out.push_back({-1, 0, hi - pad_lo});
    return out;
  }
};

std::vector<FlatGroup> flat_groups(const Model& m, int dp) {
  std::vector<FlatGroup> out;
  for (const auto& g : m.groups) {
    FlatGroup f;
    f.params = g;
    for (int p : g) {
      f.offsets.push_back(f.total);
      f.total += m.params[static_cast<std::size_t>(p)].numel;
    }
    f.padded = align_up(f.total, 2 * static_cast<std::uint64_t>(dp));
    f.partition = f.padded / static_cast<std::uint64_t>(dp);
    out.push_back(std::move(f));
  }
  return out;
}

/// ZeRO-3 sub-group: params of one param group, each sliced into ceil(n/dp) per rank.
struct SubGroup {
  int group = 0;
  std::vector<int> params;
  std::uint64_t partition = 0;  // sum of ceil(n/dp)
};

std::vector<SubGroup> sub_groups(const Model& m, int dp, double sub_group_size) {
  std::vector<SubGroup> out;
  for (std::size_t g = 0; g < m.groups.size(); ++g) {
    SubGroup cur;
    cur.group = static_cast<int>(g);
    const auto& params = m.groups[g];
    for (std::size_t i = 0; i < params.size(); ++i) {
      cur.params.push_back(params[i]);
      cur.partition += ceil_div(m.params[static_cast<std::size_t>(params[i])].numel, static_cast<std::uint64_t>(dp));
      if (static_cast<double>(cur.partition) >= sub_group_size || i + 1 == params.size()) {
        out.push_back(std::move(cur));
        cur = SubGroup{};
        cur.group = static_cast<int>(g);
      }
    }
  }
  return out;
}

/// Rank r's slice of a param in ZeRO-3 (ceil(n/dp) elements, zero padded at the end).
void zero3_slice(const Model& m, int p, int dp, int r, std::vector<Segment>& out) {
  const std::uint64_t n = m.params[static_cast<std::size_t>(p)].numel;
  const std::uint64_t pn = ceil_div(n, static_cast<std::uint64_t>(dp));
  const std::uint64_t lo = static_cast<std::uint64_t>(r) * pn;
  const std::uint64_t have = lo >= n ? 0 : std::min(pn, n - lo);
  if (have) out.push_back({p, lo, have});
  if (have < pn) out.push_back({-1, 0, pn - have});
}

// ------------------------------------------------------------------------------------ value trees

ValuePtr str(std::string s) { return Value::string(std::move(s)); }
ValuePtr num(std::int64_t v) { return Value::integer(v); }
ValuePtr flt(double v) { return Value::floating(v); }
ValuePtr boolean(bool v) { return Value::boolean(v); }
using Entries = std::vector<std::pair<ValuePtr, ValuePtr>>;
ValuePtr dict(Entries e) { return Value::dict(std::move(e)); }
ValuePtr odict(Entries e) { return Value::dict(std::move(e), true); }

ValuePtr object(ValuePtr callable, format::BuildKind kind, ValuePtr args, ValuePtr state) {
  auto v = std::make_shared<Value>();
  v->kind = Value::Kind::kObject;
  v->object.callable = std::move(callable);
  v->object.kind = kind;
  v->object.args = std::move(args);
  v->object.state = std::move(state);
  return v;
}

ValuePtr empty_set() {
  auto v = std::make_shared<Value>();
  v->kind = Value::Kind::kSet;
  return v;
}

ValuePtr tensor(const std::shared_ptr<format::Storage>& s, std::int64_t offset, std::vector<std::int64_t> shape,
                bool requires_grad = false) {
  format::Tensor t;
  t.storage = s;
  t.storage_offset = offset;
  t.stride = format::Tensor::contiguous_strides(shape);
  t.shape = std::move(shape);
  t.requires_grad = requires_grad;
  return Value::tensor_value(std::move(t));
}

ValuePtr size_of(const std::vector<std::int64_t>& shape) { return Value::size(shape); }

struct Ctx {
  const Options& o;
  const Model& m;
  DType model_dtype;
  std::vector<FlatGroup> flat;  // ZeRO-1/2, BF16
  std::vector<SubGroup> subs;   // ZeRO-3
};

double warmup_lr(int steps) {
  // DeepSpeed's WarmupLR (log warm-up, 4 steps, 0 -> 0.01) after `steps` scheduler steps.
  const int last_batch_iteration = steps - 1;
  const double min_lr = 0.0, max_lr = 0.01;
  const int warmup = 4;
  double gamma = 1.0;
  if (last_batch_iteration < warmup) gamma = (1.0 / std::log(static_cast<double>(warmup))) * std::log(static_cast<double>(last_batch_iteration + 1));
  return min_lr + (max_lr - min_lr) * gamma;
}

int micro_batch(int dp) { return std::max(1, 8 / dp); }

ValuePtr ds_config(const Ctx& c) {
  const Options& o = c.o;
  Entries zero{{str("stage"), num(o.stage)}};
  if (o.stage == 3) {
    zero.emplace_back(str("stage3_param_persistence_threshold"), num(0));
    zero.emplace_back(str("stage3_max_live_parameters"), num(0));
    zero.emplace_back(str("stage3_prefetch_bucket_size"), num(0));
    if (o.sub_group_size != 1e9) zero.emplace_back(str("sub_group_size"), num(static_cast<std::int64_t>(o.sub_group_size)));
  }
  Entries e{
      {str("train_batch_size"), num(micro_batch(o.dp) * o.dp)},
      {str("train_micro_batch_size_per_gpu"), num(micro_batch(o.dp))},
      {str("gradient_accumulation_steps"), num(1)},
      {str("gradient_clipping"), flt(1.0)},
      {str("steps_per_print"), num(1000)},
      {str("zero_optimization"), dict(std::move(zero))},
      {str("scheduler"), dict({{str("type"), str("WarmupLR")},
                               {str("params"), dict({{str("warmup_min_lr"), flt(0.0)},
                                                     {str("warmup_max_lr"), flt(0.01)},
                                                     {str("warmup_num_steps"), num(4)}})}})},
      {str("checkpoint"), dict({{str("load_universal"), boolean(false)}})},
      {str("wall_clock_breakdown"), boolean(false)},
  };
  if (c.model_dtype == DType::kBF16) e.emplace_back(str("bf16"), dict({{str("enabled"), boolean(true)}}));
  if (c.model_dtype == DType::kF16)
    e.emplace_back(str("fp16"), dict({{str("enabled"), boolean(true)},
                                      {str("loss_scale"), num(0)},
                                      {str("initial_scale_power"), num(8)},
                                      {str("loss_scale_window"), num(2)},
                                      {str("hysteresis"), num(2)},
                                      {str("min_loss_scale"), num(1)}}));
  if (o.bf16_optimizer) e.emplace_back(str("data_types"), dict({{str("grad_accum_dtype"), str("fp32")}}));
  return dict(std::move(e));
}

ValuePtr loss_scaler(const Ctx& c) {
  if (c.model_dtype != DType::kF16)
    return object(Value::global_ref("deepspeed.runtime.fp16.loss_scaler", "LossScaler"), format::BuildKind::kNewObj,
                  Value::tuple({}), dict({{str("cur_scale"), flt(1.0)}, {str("dynamic"), boolean(false)}}));
  // Dynamic scaling from 2^8, doubled every 2 clean steps (capped: a long synthetic run would
  // otherwise claim an absurd scale).
  const int doublings = std::min(c.o.steps / 2, 16);
  return object(Value::global_ref("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"), format::BuildKind::kNewObj,
                Value::tuple({}),
                dict({{str("cur_scale"), flt(std::ldexp(1.0, 8 + doublings))},
                      {str("dynamic"), boolean(true)},
                      {str("cur_iter"), num(c.o.steps)},
                      {str("last_overflow_iter"), num(-1)},
                      {str("scale_factor"), flt(2.0)},
                      {str("scale_window"), num(2)},
                      {str("min_scale"), num(1)},
                      {str("delayed_shift"), num(2)},
                      {str("cur_hysteresis"), num(2)},
                      {str("consecutive_hysteresis"), boolean(false)},
                      {str("raise_error_at_min_scale"), boolean(true)},
                      {str("dtype"), Value::global_ref("torch", "float16")}}));
}

ValuePtr zero_stage(int stage) {
  static const char* kNames[] = {"disabled", "optimizer_states", "gradients", "weights"};
  return object(Value::global_ref("__builtin__", "getattr"), format::BuildKind::kReduce,
                Value::tuple({Value::global_ref("deepspeed.runtime.zero.config", "ZeroStageEnum"), str(kNames[stage])}),
                nullptr);
}

ValuePtr fragment_address(std::uint64_t numel, std::uint64_t start) {
  return object(Value::global_ref("deepspeed.utils.tensor_fragment", "fragment_address"), format::BuildKind::kNewObj,
                Value::tuple({}),
                dict({{str("numel"), num(static_cast<std::int64_t>(numel))}, {str("start"), num(static_cast<std::int64_t>(start))}}));
}

ValuePtr param_group(const Ctx& c, int g, std::vector<int> params) {
  std::vector<ValuePtr> ids;
  for (int p : params) ids.push_back(num(p));
  return dict({{str("weight_decay"), flt(c.m.weight_decay[static_cast<std::size_t>(g)])},
               {str("lr"), flt(warmup_lr(c.o.steps))},
               {str("betas"), Value::tuple({flt(0.9), flt(0.95)})},
               {str("eps"), flt(1e-08)},
               {str("amsgrad"), boolean(false)},
               {str("foreach"), Value::none()},
               {str("maximize"), boolean(false)},
               {str("capturable"), boolean(false)},
               {str("params"), Value::list(std::move(ids))}});
}

std::shared_ptr<format::Storage> segment_storage(LazyStorages& st, const Ctx& c, Stream stream, DType dtype,
                                                 std::vector<Segment> segs) {
  auto fill = std::make_shared<SegmentFill>(c.m, stream, dtype, std::move(segs));
  const std::uint64_t n = fill->numel();
  return st.make(dtype, n, [fill](std::uint64_t first, std::span<std::byte> out) { (*fill)(first, out); });
}

std::shared_ptr<format::Storage> step_storage(LazyStorages& st, int steps) {
  return st.make(DType::kF32, 1, [steps](std::uint64_t, std::span<std::byte> out) {
    const float v = static_cast<float>(steps);
    std::memcpy(out.data(), &v, sizeof v);
  });
}

std::shared_ptr<format::Storage> buffer_storage(LazyStorages& st, const Ctx& c, const BufferInfo& b) {
  const Model* m = &c.m;
  return st.make(b.dtype, b.numel, [m, &b](std::uint64_t first, std::span<std::byte> out) { fill_buffer(*m, b, first, out); });
}

ValuePtr module_metadata(const Model& m) {
  Entries e;
  for (const auto& p : m.module_prefixes) e.emplace_back(str(p), dict({{str("version"), num(1)}}));
  return dict({{str("_metadata"), odict(std::move(e))}});
}

std::vector<std::int64_t> flat_shape(std::uint64_t n) { return {static_cast<std::int64_t>(n)}; }

/// Model-states file: mp_rank_00 (ZeRO-1/2, BF16) or zero_pp_rank_R (ZeRO-3).
ValuePtr model_states(const Ctx& c, int rank, LazyStorages& st) {
  const Model& m = c.m;
  const bool z3 = c.o.stage == 3;
  // Storage of each parameter's data in the module (ZeRO-1/2: a view into its group's flat
  // buffer; frozen params: their own storage; ZeRO-3: 0-element placeholders).
  std::vector<std::shared_ptr<format::Storage>> param_storage(m.params.size());
  std::vector<std::int64_t> param_offset(m.params.size(), 0);
  if (!z3) {
    for (const auto& g : c.flat) {
      auto s = segment_storage(st, c, Stream::kMaster, c.model_dtype, g.segments(m, 0, g.padded));
      for (std::size_t i = 0; i < g.params.size(); ++i) {
        param_storage[static_cast<std::size_t>(g.params[i])] = s;
        param_offset[static_cast<std::size_t>(g.params[i])] = static_cast<std::int64_t>(g.offsets[i]);
      }
    }
  }
  Entries module;
  for (const auto& e : m.state_dict) {
    if (e.kind == SdEntry::kBuffer) {
      const BufferInfo& b = m.buffers[static_cast<std::size_t>(e.index)];
      module.emplace_back(str(e.name), tensor(buffer_storage(st, c, b), 0, b.shape));
      continue;
    }
    const std::size_t p = static_cast<std::size_t>(e.index);
    const ParamInfo& info = m.params[p];
    if (!param_storage[p]) {  // first sight (aliases come after their source)
      if (z3) param_storage[p] = st.make(c.model_dtype, 0, [](std::uint64_t, std::span<std::byte>) {});
      else param_storage[p] = segment_storage(st, c, Stream::kMaster, c.model_dtype, {{static_cast<int>(p), 0, info.numel}});
    }
    module.emplace_back(str(e.name), tensor(param_storage[p], param_offset[p], z3 ? std::vector<std::int64_t>{0} : info.shape));
  }
  ValuePtr module_v = odict(std::move(module));
  module_v->state = module_metadata(m);

  std::vector<ValuePtr> shapes;
  if (!z3) {
    for (const auto& g : c.flat) {
      Entries e;
      for (int p : g.params) e.emplace_back(str(m.params[static_cast<std::size_t>(p)].name), size_of(m.params[static_cast<std::size_t>(p)].shape));
      shapes.push_back(odict(std::move(e)));
    }
  } else {
    for (const auto& sg : c.subs) {
      Entries e;
      for (int p : sg.params) e.emplace_back(str(m.params[static_cast<std::size_t>(p)].name), size_of(m.params[static_cast<std::size_t>(p)].shape));
      shapes.push_back(odict(std::move(e)));
    }
  }

  ValuePtr frozen_shapes = Value::none(), frozen_fragments = Value::none();
  if (c.o.stage >= 2) {
    Entries fs, ff;
    for (std::size_t p = 0; p < m.params.size(); ++p) {
      const ParamInfo& info = m.params[p];
      if (info.trainable) continue;
      fs.emplace_back(str(info.name), size_of(info.shape));
      if (!z3) {
        ff.emplace_back(str(info.name), tensor(param_storage[p], 0, info.shape));
      } else {
        std::vector<Segment> segs;
        zero3_slice(m, static_cast<int>(p), c.o.dp, rank, segs);
        auto s = segment_storage(st, c, Stream::kMaster, c.model_dtype, std::move(segs));
        ff.emplace_back(str(info.name), tensor(s, 0, flat_shape(s->numel)));
      }
    }
    frozen_shapes = odict(std::move(fs));
    frozen_fragments = odict(std::move(ff));
  }

  Entries shared;
  if (rank == 0)
    for (const auto& [alias, source] : m.shared) shared.emplace_back(str(alias), str(source));

  std::vector<ValuePtr> buffer_names;
  for (const auto& b : m.buffers) buffer_names.push_back(str(b.name));

  return dict({
      {str("module"), module_v},
      {str("buffer_names"), Value::list(std::move(buffer_names))},
      {str("optimizer"), Value::none()},
      {str("param_shapes"), Value::list(std::move(shapes))},
      {str("frozen_param_shapes"), frozen_shapes},
      {str("shared_params"), dict(std::move(shared))},
      {str("frozen_param_fragments"), frozen_fragments},
      {str("lr_scheduler"), dict({{str("last_batch_iteration"), num(c.o.steps - 1)}})},
      {str("data_sampler"), Value::none()},
      {str("random_ltd"), Value::none()},
      {str("sparse_tensor_module_names"), empty_set()},
      {str("skipped_steps"), num(0)},
      {str("global_steps"), num(c.o.steps)},
      {str("global_samples"), num(static_cast<std::int64_t>(c.o.steps) * micro_batch(c.o.dp) * c.o.dp)},
      {str("dp_world_size"), num(c.o.dp)},
      {str("mp_world_size"), num(1)},
      {str("ds_config"), ds_config(c)},
      {str("ds_version"), str(kDsVersion)},
  });
}

ValuePtr adam_state(const Ctx& c, LazyStorages& st, std::vector<Segment> segs) {
  auto step = step_storage(st, c.o.steps);
  auto m1 = segment_storage(st, c, Stream::kExpAvg, DType::kF32, segs);
  auto m2 = segment_storage(st, c, Stream::kExpAvgSq, DType::kF32, std::move(segs));
  return dict({{str("step"), tensor(step, 0, {})},
               {str("exp_avg"), tensor(m1, 0, flat_shape(m1->numel))},
               {str("exp_avg_sq"), tensor(m2, 0, flat_shape(m2->numel))}});
}

/// Optimizer-states file of DP rank `rank`.
ValuePtr optim_states(const Ctx& c, int rank, LazyStorages& st) {
  const Model& m = c.m;
  const int dp = c.o.dp;
  ValuePtr osd;
  if (c.o.stage == 3) {
    Entries state;
    std::vector<ValuePtr> flat;
    std::vector<std::vector<int>> group_subs(m.groups.size());
    std::vector<std::vector<Segment>> segs(c.subs.size());
    for (std::size_t k = 0; k < c.subs.size(); ++k) {
      for (int p : c.subs[k].params) zero3_slice(m, p, dp, rank, segs[k]);
      group_subs[static_cast<std::size_t>(c.subs[k].group)].push_back(static_cast<int>(k));
      state.emplace_back(num(static_cast<std::int64_t>(k)), adam_state(c, st, segs[k]));
    }
    for (std::size_t k = 0; k < c.subs.size(); ++k) {
      auto s = segment_storage(st, c, Stream::kMaster, DType::kF32, segs[k]);
      flat.push_back(tensor(s, 0, flat_shape(s->numel), true));
    }
    std::vector<ValuePtr> groups;
    for (std::size_t g = 0; g < m.groups.size(); ++g) groups.push_back(param_group(c, static_cast<int>(g), group_subs[g]));
    osd = dict({{str("zero_stage"), zero_stage(3)},
                {str("loss_scaler"), loss_scaler(c)},
                {str("dynamic_loss_scale"), boolean(c.model_dtype == DType::kF16)},
                {str("overflow"), boolean(false)},
                {str("partition_count"), num(dp)},
                {str("optimizer_state_dict"), dict({{str("state"), dict(std::move(state))},
                                                    {str("param_groups"), Value::list(std::move(groups))}})},
                {str("fp32_flat_groups"), Value::list(std::move(flat))}});
  } else {
    Entries state;
    std::vector<ValuePtr> groups, parts, paddings, counts, mappings;
    for (std::size_t g = 0; g < c.flat.size(); ++g) {
      const FlatGroup& f = c.flat[g];
      const std::uint64_t lo = static_cast<std::uint64_t>(rank) * f.partition, hi = lo + f.partition;
      state.emplace_back(num(static_cast<std::int64_t>(g)), adam_state(c, st, f.segments(m, lo, hi)));
      groups.push_back(param_group(c, static_cast<int>(g), {static_cast<int>(g)}));
      // Padding of this rank's partition: ZeRO-1/2 per rank (saved without it), BF16 all on the
      // last rank (saved with it).
      std::uint64_t pad = 0;
      if (c.o.bf16_optimizer) pad = rank == dp - 1 ? f.padded - f.total : 0;
      else pad = f.total <= lo ? f.partition : (f.total < hi ? hi - f.total : 0);
      auto s = segment_storage(st, c, Stream::kMaster, DType::kF32, f.segments(m, lo, hi));
      const std::uint64_t saved = c.o.bf16_optimizer ? f.partition : f.partition - pad;
      parts.push_back(tensor(s, 0, flat_shape(saved), true));
      paddings.push_back(num(static_cast<std::int64_t>(pad)));
      counts.push_back(num(dp));
      Entries map;
      for (std::size_t i = 0; i < f.params.size(); ++i) {
        const std::uint64_t b = f.offsets[i], e = b + m.params[static_cast<std::size_t>(f.params[i])].numel;
        if (b < hi && e > lo) {
          const std::uint64_t s0 = std::max(b, lo), s1 = std::min(e, hi);
          map.emplace_back(str(m.params[static_cast<std::size_t>(f.params[i])].name), fragment_address(s1 - s0, s0 - lo));
        }
      }
      mappings.push_back(odict(std::move(map)));
    }
    ValuePtr base_state = dict({{str("state"), dict(std::move(state))}, {str("param_groups"), Value::list(std::move(groups))}});
    if (c.o.bf16_optimizer) {
      osd = dict({{str("clip_grad"), flt(1.0)},
                  {str("base_optimizer_state"), base_state},
                  {str("single_partition_of_fp32_groups"), Value::list(std::move(parts))},
                  {str("group_paddings"), Value::list(std::move(paddings))},
                  {str("partition_count"), Value::list(std::move(counts))},
                  {str("ds_version"), str(kDsVersion)},
                  {str("param_slice_mappings"), Value::list(std::move(mappings))}});
    } else {
      osd = dict({{str("loss_scaler"), loss_scaler(c)},
                  {str("dynamic_loss_scale"), boolean(c.model_dtype == DType::kF16)},
                  {str("overflow"), boolean(false)},
                  {str("clip_grad"), flt(1.0)},
                  {str("base_optimizer_state"), base_state},
                  {str("single_partition_of_fp32_groups"), Value::list(std::move(parts))},
                  {str("zero_stage"), zero_stage(c.o.stage)},
                  {str("group_paddings"), Value::list(std::move(paddings))},
                  {str("partition_count"), Value::list(std::move(counts))},
                  {str("ds_version"), str(kDsVersion)},
                  {str("param_slice_mappings"), Value::list(std::move(mappings))}});
    }
  }
  return dict({{str("optimizer_state_dict"), osd}, {str("ds_config"), ds_config(c)}, {str("ds_version"), str(kDsVersion)}});
}

// ------------------------------------------------------------------------------------ expect

/// The fp32 state dict a correct consolidation produces (buffers, frozen, trainable, aliases),
/// computed from the value functions directly.
Status write_expect(const Ctx& c, const std::string& path) {
  const Model& m = c.m;
  std::vector<std::vector<std::byte>> data;
  std::vector<format::SafetensorsBlob> blobs;
  data.reserve(m.buffers.size() + m.params.size() + m.shared.size());
  for (const auto& b : m.buffers) {
    const DType out = base::dtype_is_floating(b.dtype) ? DType::kF32 : b.dtype;
    std::vector<std::byte> bytes(b.numel * base::dtype_size(b.dtype));
    fill_buffer(m, b, 0, bytes);
    if (out != b.dtype) {
      std::vector<std::byte> up(b.numel * 4);
      base::convert_elements(b.dtype, bytes.data(), out, up.data(), b.numel);
      bytes.swap(up);
    }
    data.push_back(std::move(bytes));
    blobs.push_back({{b.name, out, b.shape}, data.back()});
  }
  std::map<std::string, std::size_t> blob_of;
  for (const auto& p : m.params) {
    std::vector<std::byte> bytes(p.numel * 4);
    auto* f = reinterpret_cast<float*>(bytes.data());
    for (std::uint64_t i = 0; i < p.numel; ++i) f[i] = synth_value(p.master, i);
    if (!p.trainable && c.model_dtype != DType::kF32) {  // frozen: only the model-dtype copy exists
      std::vector<std::byte> low(p.numel * base::dtype_size(c.model_dtype));
      base::convert_elements(DType::kF32, bytes.data(), c.model_dtype, low.data(), p.numel);
      base::convert_elements(c.model_dtype, low.data(), DType::kF32, bytes.data(), p.numel);
    }
    data.push_back(std::move(bytes));
    blob_of[p.name] = blobs.size();
    blobs.push_back({{p.name, DType::kF32, p.shape}, data.back()});
  }
  for (const auto& [alias, source] : m.shared) {
    const auto& src = blobs[blob_of.at(source)];
    blobs.push_back({{alias, DType::kF32, src.spec.shape}, src.data});
  }
  return format::write_safetensors_file(path, blobs);
}

// ------------------------------------------------------------------------------------ main

struct FileJob {
  std::string name;
  bool model;  // model states (else optimizer states)
  int rank;
};

int run(Options o) {
  auto fail = [](const Status& s) {
    std::cerr << "ucp-bench-gen: " << s.to_string() << "\n";
    return s.exit_code() ? s.exit_code() : 1;
  };
  DType model_dtype;
  if (o.precision == "bf16") model_dtype = DType::kBF16;
  else if (o.precision == "fp16") model_dtype = DType::kF16;
  else if (o.precision == "fp32") model_dtype = DType::kF32;
  else return fail(base::invalid_argument("--precision must be fp32, fp16 or bf16, got '" + o.precision + "'"));
  if (o.stage < 1 || o.stage > 3) return fail(base::invalid_argument("--stage must be 1, 2 or 3"));
  if (o.dp < 1 || o.dp > 4096) return fail(base::invalid_argument("--dp must be in [1, 4096]"));
  if (o.bf16_optimizer && (model_dtype != DType::kBF16 || o.stage != 1))
    return fail(base::invalid_argument("--bf16-optimizer needs --precision bf16 and --stage 1 (DeepSpeed's BF16_Optimizer)"));
  if (o.steps < 1) return fail(base::invalid_argument("--steps must be >= 1"));
  if (o.groups < 0 || o.groups > 2) return fail(base::invalid_argument("--groups must be 1 or 2"));
  if (!(o.sub_group_size >= 1)) return fail(base::invalid_argument("--sub-group-size must be >= 1"));
  auto chunk = base::parse_size(o.chunk);
  if (!chunk.ok()) return fail(chunk.status());
  if (*chunk < 4096) return fail(base::invalid_argument("--chunk must be at least 4096 bytes"));
  if (o.tag.empty()) o.tag = "global_step" + std::to_string(o.steps);
  if (o.layers <= 0 || o.hidden <= 0 || o.vocab <= 0 || o.seq <= 0) {
    auto target = parse_count(o.params_text);
    if (!target.ok()) return fail(target.status());
    choose_shape(*target, o.frozen, o);
  }

  const Model model = build_model(o, model_dtype);
  Ctx ctx{o, model, model_dtype, {}, {}};
  if (o.stage == 3) ctx.subs = sub_groups(model, o.dp, o.sub_group_size);
  else ctx.flat = flat_groups(model, o.dp);

  namespace fs = std::filesystem;
  const fs::path tag_dir = fs::path(o.out) / o.tag;
  std::error_code ec;
  if (fs::exists(tag_dir, ec) && !fs::is_empty(tag_dir, ec)) {
    if (!o.overwrite)
      return fail(base::failed_precondition("'" + tag_dir.string() + "' exists and is not empty (use --overwrite)"));
    fs::remove_all(tag_dir, ec);
  }
  fs::create_directories(tag_dir, ec);
  if (ec) return fail(base::unavailable("cannot create '" + tag_dir.string() + "': " + ec.message()));

  const std::string prefix = model_dtype == DType::kBF16 ? "bf16_" : "";
  std::vector<FileJob> jobs;
  if (o.stage == 3) {
    for (int r = 0; r < o.dp; ++r) jobs.push_back({"zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_model_states.pt", true, r});
  } else {
    jobs.push_back({"mp_rank_00_model_states.pt", true, 0});
  }
  for (int r = 0; r < o.dp; ++r)
    jobs.push_back({prefix + "zero_pp_rank_" + std::to_string(r) + "_mp_rank_00_optim_states.pt", false, r});

  const auto start = std::chrono::steady_clock::now();
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> total_bytes{0};
  std::mutex err_mu;
  Status first_error;
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      {
        std::lock_guard<std::mutex> lock(err_mu);
        if (!first_error.ok()) return;
      }
      const FileJob& job = jobs[i];
      LazyStorages st;
      ValuePtr root = job.model ? model_states(ctx, job.rank, st) : optim_states(ctx, job.rank, st);
      auto w = write_lazy_torch_file((tag_dir / job.name).string(), root, st, static_cast<std::size_t>(*chunk));
      if (!w.ok()) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (first_error.ok()) first_error = w.status();
        return;
      }
      total_bytes += w->bytes;
    }
  };
  int n_threads = o.jobs > 0 ? o.jobs : static_cast<int>(std::max(1u, std::min(2u, std::thread::hardware_concurrency())));
  n_threads = std::min<int>(n_threads, static_cast<int>(jobs.size()));
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return fail(first_error);
  {
    std::ofstream latest(fs::path(o.out) / "latest", std::ios::binary | std::ios::trunc);
    latest << o.tag;  // DeepSpeed writes the tag without a newline
    if (!latest.good()) return fail(base::unavailable("cannot write '" + (fs::path(o.out) / "latest").string() + "'"));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (!o.expect.empty()) {
    Status s = write_expect(ctx, o.expect);
    if (!s.ok()) return fail(s);
  }

  std::uint64_t trainable = 0;
  for (const auto& p : model.params) trainable += p.trainable ? p.numel : 0;
  std::cerr << "ucp-bench-gen: " << o.out << "/" << o.tag << ": ZeRO-" << o.stage << (o.bf16_optimizer ? " BF16_Optimizer" : "")
            << " " << o.precision << " dp " << o.dp << ", " << model.total_params() << " params (layers " << model.layers
            << ", hidden " << model.hidden << ", vocab " << model.vocab << ", seq " << model.seq << "), " << jobs.size()
            << " files, " << base::format_bytes(total_bytes) << " in " << seconds << " s\n";
  std::printf(
      "{\"params\": %llu, \"trainable_params\": %llu, \"layers\": %lld, \"hidden\": %lld, \"vocab\": %lld, \"seq\": %lld, "
      "\"stage\": %d, \"precision\": \"%s\", \"bf16_optimizer\": %s, \"dp\": %d, \"groups\": %zu, \"tag\": \"%s\", "
      "\"files\": %zu, \"bytes\": %llu, \"seconds\": %.3f}\n",
      static_cast<unsigned long long>(model.total_params()), static_cast<unsigned long long>(trainable),
      static_cast<long long>(model.layers), static_cast<long long>(model.hidden), static_cast<long long>(model.vocab),
      static_cast<long long>(model.seq), o.stage, o.precision.c_str(), o.bf16_optimizer ? "true" : "false", o.dp,
      model.groups.size(), o.tag.c_str(), jobs.size(), static_cast<unsigned long long>(total_bytes.load()), seconds);
  return 0;
}

}  // namespace
}  // namespace ucp::bench

int main(int argc, char** argv) {
  ucp::bench::Options o;
  CLI::App app{"Synthesise a DeepSpeed ZeRO checkpoint (exact DeepSpeed 0.14.5 layout) for benchmarks and tests"};
  app.add_option("--out", o.out, "Save dir to create (gets 'latest' and the tag folder)")->required();
  app.add_option("--params", o.params_text, "About this many parameters (505M, 1.5B, 2000000); picks the shape")
      ->capture_default_str();
  app.add_option("--layers", o.layers, "Transformer blocks (with --hidden: overrides --params)");
  app.add_option("--hidden", o.hidden, "Hidden size");
  app.add_option("--vocab", o.vocab, "Vocabulary size");
  app.add_option("--seq", o.seq, "Positions (wpe rows, causal mask size)");
  app.add_option("--stage", o.stage, "ZeRO stage 1, 2 or 3")->capture_default_str();
  app.add_option("--precision", o.precision, "Model dtype: fp32, fp16 or bf16")->capture_default_str();
  app.add_flag("--bf16-optimizer", o.bf16_optimizer, "DeepSpeed's BF16_Optimizer (bf16 + ZeRO-1 + fp32 grad accumulation)");
  app.add_option("--dp", o.dp, "Data-parallel world size")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of all values")->capture_default_str();
  app.add_option("--steps", o.steps, "Training steps recorded (global_steps, Adam step, scheduler)")->capture_default_str();
  app.add_option("--tag", o.tag, "Tag folder (default global_step<steps>)");
  app.add_option("--groups", o.groups, "Optimizer param groups: 1, or 2 (decay / no decay); default 1 at ZeRO-3, else 2");
  app.add_option("--sub-group-size", o.sub_group_size, "ZeRO-3 sub_group_size (elements)")->capture_default_str();
  app.add_flag("--frozen,!--no-frozen", o.frozen, "Include a frozen adapter (requires_grad=False)")->capture_default_str();
  app.add_flag("--extra-buffers,!--no-extra-buffers", o.extra_buffers,
               "Include int64 position_ids and a float inv_freq buffer besides the bool causal mask")
      ->capture_default_str();
  app.add_option("--expect", o.expect, "Also write the expected fp32 consolidation here (.safetensors; small sizes)");
  app.add_option("--jobs", o.jobs, "Files written in parallel (default: min(2, cores))");
  app.add_option("--chunk", o.chunk, "Streaming buffer per file")->capture_default_str();
  app.add_flag("--overwrite", o.overwrite, "Replace an existing tag folder");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return ucp::bench::run(std::move(o));
}
