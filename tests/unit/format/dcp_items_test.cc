// DCP non-tensor items and the nested state of planner_data. Against torch itself in
// tests/oracle/stack_dcp_items.py; here the rules one by one: set_element's nesting (list indices
// make lists with None holes, a dotted key inside one path step stays one key, conflicting paths
// are refused), and the weights_only allowlist (containers, sizes and dtypes pass, a function such
// as os.system -- pickled as posix.system -- is refused naming the item, never run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"
#include "ucp/format/dcp.h"
#include "ucp/format/torch_file.h"

namespace ucp::format::dcp {
namespace {

using base::StatusCode;
using testutil::IsOk;
using testutil::StatusIs;
using testing::HasSubstr;

PathElement key(std::string k) { return {std::move(k), -1}; }
PathElement index(std::int64_t i) { return {"", i}; }

Metadata with_paths(std::vector<std::pair<std::string, std::vector<PathElement>>> paths) {
  Metadata m;
  m.dir = "ckpt";
  for (auto& [fqn, path] : paths) {
    m.item_order.push_back(fqn);
    m.planner_paths[fqn] = std::move(path);
  }
  return m;
}

TEST(DcpNestedState, ListIndicesMakeListsWithNoneHoles) {
  const Metadata m = with_paths({{"optim.param_groups.1.lr", {key("optim"), key("param_groups"), index(1), key("lr")}},
                                 {"model.norm.weight", {key("model"), key("norm.weight")}},
                                 {"step", {key("step")}}});
  auto root = nested_state(m, {{"optim.param_groups.1.lr", Value::floating(0.5)},
                               {"model.norm.weight", Value::integer(3)},
                               {"step", Value::integer(17)}});
  ASSERT_THAT(root, IsOk());
  const ValuePtr groups = (*root)->get("optim")->get("param_groups");
  ASSERT_EQ(groups->kind, Value::Kind::kList);
  ASSERT_EQ(groups->items.size(), 2u);
  EXPECT_EQ(groups->items[0]->kind, Value::Kind::kNone);
  EXPECT_EQ(groups->items[1]->get("lr")->f, 0.5);
  EXPECT_EQ((*root)->get("model")->get("norm.weight")->i, 3);
  EXPECT_EQ((*root)->get("step")->i, 17);
  // Keys in .metadata order, plain dicts (dcp_to_torch_save builds dicts, not OrderedDicts).
  ASSERT_EQ((*root)->entries.size(), 3u);
  EXPECT_EQ((*root)->entries[0].first->str, "optim");
  EXPECT_FALSE((*root)->ordered_dict);
}

TEST(DcpNestedState, KeysWithoutPlannerDataAreTheirOwnPath) {
  Metadata m;
  m.item_order = {"model.w"};
  auto root = nested_state(m, {{"model.w", Value::integer(1)}});
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ((*root)->get("model.w")->i, 1);
}

TEST(DcpNestedState, ConflictingPathsAreRefused) {
  const Metadata m = with_paths({{"a.0", {key("a"), index(0)}}, {"a.b", {key("a"), key("b")}}});
  auto root = nested_state(m, {{"a.0", Value::integer(1)}, {"a.b", Value::integer(2)}});
  EXPECT_THAT(root, StatusIs(StatusCode::kDataLoss, HasSubstr("'a.b'")));
}

class DcpBytesItem : public testing::Test {
 protected:
  // A one-item data file holding `value` as torch.save writes it; the Metadata naming it.
  Metadata item_file(const ValuePtr& value) {
    auto bytes = torch_file_bytes(value, {"archive", 2});
    EXPECT_THAT(bytes, IsOk());
    std::ofstream(tmp_ / "__0_0.distcp", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    Metadata m;
    m.dir = tmp_.path().string();
    m.bytes_items.push_back({"note", {"__0_0.distcp", 0, bytes->size(), {}}});
    return m;
  }
  testutil::TempDir tmp_;
};

TEST_F(DcpBytesItem, WhatWeightsOnlyLoadingTakesIsDecoded) {
  const ValuePtr value = Value::dict({{Value::string("betas"), Value::tuple({Value::floating(0.9), Value::floating(0.95)})},
                                      {Value::string("foreach"), Value::none()},
                                      {Value::string("shape"), Value::size({2, 3})},
                                      {Value::string("dtype"), Value::global_ref("torch", "bfloat16")},
                                      {Value::string("params"), Value::list({Value::string("model.w")})}});
  const Metadata m = item_file(value);
  auto got = read_bytes_item(m, m.bytes_items[0]);
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(values_equal(*got, value)) << first_difference(*got, value);
}

TEST_F(DcpBytesItem, AGlobalFunctionIsRefusedByName) {
  auto call = std::make_shared<Value>();
  call->kind = Value::Kind::kObject;
  call->object.callable = Value::global_ref("posix", "system");
  call->object.args = Value::tuple({Value::string("touch pwned")});
  const Metadata m = item_file(Value::list({Value::integer(1), call}));
  EXPECT_THAT(read_bytes_item(m, m.bytes_items[0]),
              StatusIs(StatusCode::kDataLoss, testing::AllOf(HasSubstr("'note'"), HasSubstr("posix.system"),
                                                             HasSubstr("weights_only"))));
}

TEST_F(DcpBytesItem, AnItemPastTheEndOfItsFileIsRefused) {
  Metadata m = item_file(Value::integer(17));
  m.bytes_items[0].stored.length += 1;
  EXPECT_THAT(read_bytes_item(m, m.bytes_items[0]), StatusIs(StatusCode::kDataLoss, HasSubstr("runs past the end")));
}

TEST_F(DcpBytesItem, ACorruptZstdStreamIsRefused) {
  Metadata m = item_file(Value::integer(17));
  m.bytes_items[0].stored.transforms = {"stream.zstd/1"};  // a plain zip, not a zstd frame
  auto got = read_bytes_item(m, m.bytes_items[0]);
  EXPECT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("zstd"));
}

}  // namespace
}  // namespace ucp::format::dcp
