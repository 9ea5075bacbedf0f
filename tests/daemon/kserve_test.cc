#include "daemon/kserve.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine/inputs.h"

namespace recsched::daemon {
namespace {

using nlohmann::json;

engine::ModelSpec dlrm_spec() {
  return engine::parse_model_spec(json::parse(R"({"name": "tiny", "type": "dlrm",
      "dense_features": 3, "embedding_dim": 4, "tables": [10, 20], "bottom_mlp": [4],
      "top_mlp": [1]})"))
      .value();
}

engine::ModelSpec ncf_spec() {
  return engine::parse_model_spec(json::parse(R"({"name": "ncf4", "type": "ncf",
      "dense_features": 0, "embedding_dim": 4, "tables": [5, 6, 7, 8], "mlp": [4]})"))
      .value();
}

// N = 2, D = 3, T = 2: table 0 bags {9}, {0, 1}; table 1 bags {}, {19, 0, 5}.
json good_request() {
  return json::parse(R"({"id": "q7", "parameters": {"sla_ms": 25, "priority": 1},
      "inputs": [
        {"name": "dense", "datatype": "FP32", "shape": [2, 3], "data": [0.5, 1, 2, 3, 4.25, -5]},
        {"name": "sparse_lengths", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 0, 3]},
        {"name": "sparse_indices", "datatype": "INT64", "shape": [6],
         "data": [9, 0, 1, 19, 0, 5]}],
      "outputs": [{"name": "scores"}]})");
}

// The same items in engine::batch_from_json's layout.
Batch expected_batch() {
  return engine::batch_from_json(dlrm_spec(), json::parse(R"({
      "dense": [[0.5, 1, 2], [3, 4.25, -5]], "sparse_lengths": [[1, 2], [0, 3]],
      "sparse_indices": [9, 0, 1, 19, 0, 5]})"))
      .value();
}

// The batch as the engine reads it (ids where the parser left them: in the batch, in the
// body, or in memory of the request's own) against `want`.
void check_same(const InferRequest& got, const Batch& want) {
  CHECK(got.batch.batch_size == want.batch_size);
  CHECK(got.batch.num_dense == want.num_dense);
  CHECK(got.batch.num_tables == want.num_tables);
  CHECK(got.batch.dense == want.dense);
  const BatchView v = got.view();
  CHECK(ids_of(v) == want.sparse.indices);
  CHECK(got.batch.sparse.offsets == want.sparse.offsets);
}

json& input(json& req, std::string_view name) {
  for (json& in : req["inputs"]) {
    if (in["name"] == name) return in;
  }
  FAIL("no input " << name);
  return req;
}

template <class T>
void append_little_endian(std::string& out, T value) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U u = std::bit_cast<U>(value);
  for (size_t b = 0; b < sizeof(T); ++b) out.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
}

// One input's "data" as its datatype's little-endian bytes, appended to `out`.
void append_data(std::string& out, const json& in) {
  const std::string dtype = in["datatype"];
  for (const json& v : in["data"]) {
    if (dtype == "FP32") append_little_endian(out, v.get<float>());
    if (dtype == "INT32") append_little_endian(out, v.get<int32_t>());
    if (dtype == "INT64") append_little_endian(out, v.get<int64_t>());
  }
}

/// A body in the binary extension's form.
struct Wire {
  std::string body;
  std::optional<size_t> header_length;
};

/// Moves the data of the named inputs (all by default) into binary sections, in input
/// order; `edit_header` then changes the JSON header before it is written.
Wire to_binary(json req, const std::set<std::string>& names = {},
               const std::function<void(json&)>& edit_header = nullptr) {
  std::string bytes;
  for (json& in : req["inputs"]) {
    if (!names.empty() && !names.count(in["name"].get<std::string>())) continue;
    const size_t start = bytes.size();
    append_data(bytes, in);
    const size_t size = bytes.size() - start;
    in.erase("data");
    in["parameters"]["binary_data_size"] = size;
  }
  if (edit_header) edit_header(req);
  Wire w;
  w.body = req.dump();
  w.header_length = w.body.size();
  w.body += bytes;
  return w;
}

Result<InferRequest> parse(const Wire& w, const engine::ModelSpec& spec,
                           const InferLimits& limits = {}) {
  return parse_infer_request(w.body, w.header_length, spec, limits);
}

Result<InferRequest> parse(const json& req, const engine::ModelSpec& spec) {
  return parse_infer_request(req.dump(), std::nullopt, spec, {});
}

TEST_CASE("a JSON request parses to the Batch engine::batch_from_json gives") {
  Result<InferRequest> r = parse(good_request(), dlrm_spec());
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  check_same(*r, expected_batch());
  CHECK(r->id == "q7");
  REQUIRE(r->sla_ms.has_value());
  CHECK(*r->sla_ms == 25.0);
  CHECK(r->priority == 1);
  CHECK_FALSE(r->binary_output);
}

TEST_CASE("id, parameters and outputs are optional") {
  json req = good_request();
  req.erase("id");
  req.erase("parameters");
  req.erase("outputs");
  Result<InferRequest> r = parse(req, dlrm_spec());
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  CHECK(r->id.empty());
  CHECK_FALSE(r->sla_ms.has_value());
  CHECK(r->priority == 0);
  check_same(*r, expected_batch());
}

TEST_CASE("nested data parses the same as flat data") {
  json req = good_request();
  input(req, "dense")["data"] = json::parse("[[0.5, 1, 2], [3, 4.25, -5]]");
  input(req, "sparse_lengths")["data"] = json::parse("[[1, 2], [0, 3]]");
  Result<InferRequest> r = parse(req, dlrm_spec());
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  check_same(*r, expected_batch());
}

TEST_CASE("the binary extension gives the same Batch as JSON data") {
  SUBCASE("all three inputs binary") {
    Result<InferRequest> r = parse(to_binary(good_request()), dlrm_spec());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
  SUBCASE("binary and JSON inputs mixed") {
    Result<InferRequest> r =
        parse(to_binary(good_request(), {"dense", "sparse_indices"}), dlrm_spec());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
  SUBCASE("sections follow the order the inputs appear in") {
    json req = good_request();
    std::swap(req["inputs"][0], req["inputs"][2]);
    Result<InferRequest> r = parse(to_binary(req), dlrm_spec());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
  SUBCASE("nothing is read past the body's view") {
    Wire w = to_binary(good_request());
    const std::string padded = w.body + std::string(64, '\0');
    Result<InferRequest> r = parse_infer_request(std::string_view(padded).substr(0, w.body.size()),
                                                 w.header_length, dlrm_spec(), {});
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
}

TEST_CASE("sparse_indices may be INT32, binary or JSON, and decode to the same Batch") {
  json req = good_request();
  input(req, "sparse_indices")["datatype"] = "INT32";
  SUBCASE("JSON data") {
    Result<InferRequest> r = parse(req, dlrm_spec());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
  SUBCASE("binary data: half the bytes of INT64") {
    const Wire narrow = to_binary(req);
    const Wire wide = to_binary(good_request());
    CHECK(wide.body.size() - narrow.body.size() ==
          4 * input(req, "sparse_indices")["data"].size());
    Result<InferRequest> r = parse(narrow, dlrm_spec());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, expected_batch());
  }
  SUBCASE("a binary size of INT64 elements for INT32 ids is refused, naming the type") {
    const Wire w = to_binary(req, {}, [](json& h) {
      input(h, "sparse_indices")["parameters"]["binary_data_size"] = 48;
    });
    Result<InferRequest> r = parse(w, dlrm_spec());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().message() ==
          "input 'sparse_indices': binary_data_size 48 does not match shape [6] of INT32 (24 bytes)");
  }
  SUBCASE("a negative binary INT32 id stays negative, and is refused as outside its table") {
    input(req, "sparse_indices")["data"][0] = -1;
    Result<InferRequest> r = parse(to_binary(req), dlrm_spec());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().message().find("= -1 is outside table 0") != std::string::npos);
  }
  SUBCASE("a JSON id past the INT32 range is refused as such") {
    input(req, "sparse_indices")["data"][0] = int64_t{1} << 31;
    Result<InferRequest> r = parse(req, dlrm_spec());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().message() ==
          "input 'sparse_indices': element 0 = 2147483648 is outside the INT32 range");
  }
}

TEST_CASE("binary INT64 ids aligned in a body the request owns are read where they lie") {
  // The ids' place in the body moves with the JSON header's length: of eight paddings of
  // the header (trailing spaces), exactly one puts them on an 8-byte boundary (a string's
  // heap buffer is 16-byte aligned). That one is read in place, the others copied; all
  // decode to the same batch, through view().
  const Batch want = expected_batch();
  int in_place = 0;
  for (size_t pad = 0; pad < 8; ++pad) {
    CAPTURE(pad);
    Wire w = to_binary(good_request());
    w.body.insert(*w.header_length, std::string(pad, ' '));
    *w.header_length += pad;
    Result<InferRequest> r =
        parse_infer_request_in_place(std::move(w.body), w.header_length, dlrm_spec(), {});
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    const InferRequest moved = std::move(r).value();  // the ids stay where they are
    if (moved.wire) {
      ++in_place;
      CHECK(moved.batch.sparse.indices.empty());
      CHECK(reinterpret_cast<uintptr_t>(moved.ids_in_place.data()) % alignof(int64_t) == 0);
    }
    const BatchView v = moved.view();
    CHECK(std::vector<int64_t>(v.indices.begin(), v.indices.end()) == want.sparse.indices);
    CHECK(std::vector<int64_t>(v.offsets.begin(), v.offsets.end()) == want.sparse.offsets);
    CHECK(std::vector<float>(v.dense.begin(), v.dense.end()) == want.dense);
    CHECK(v.batch_size == want.batch_size);

    // An id outside its table is refused in place as when copied.
    json bad = good_request();
    input(bad, "sparse_indices")["data"][5] = 100;
    Wire wb = to_binary(bad);
    wb.body.insert(*wb.header_length, std::string(pad, ' '));
    *wb.header_length += pad;
    const std::string copy = wb.body;
    Result<InferRequest> rb =
        parse_infer_request_in_place(std::move(wb.body), wb.header_length, dlrm_spec(), {});
    Result<InferRequest> rc =
        parse_infer_request(std::string_view(copy), wb.header_length, dlrm_spec(), {});
    REQUIRE_FALSE(rb.has_value());
    REQUIRE_FALSE(rc.has_value());
    CHECK(rb.status().message() == rc.status().message());
  }
  CHECK(in_place == 1);
}

TEST_CASE("binary INT32 ids stay 32-bit for the engine, read where they lie when aligned") {
  // As the INT64 case above, at 4-byte alignment: of eight paddings, two put the ids on a
  // 4-byte boundary and are read in place; the others are copied, still 32-bit.
  const Batch want = expected_batch();
  json req = good_request();
  input(req, "sparse_indices")["datatype"] = "INT32";
  int in_place = 0;
  for (size_t pad = 0; pad < 8; ++pad) {
    CAPTURE(pad);
    Wire w = to_binary(req);
    w.body.insert(*w.header_length, std::string(pad, ' '));
    *w.header_length += pad;
    Result<InferRequest> r =
        parse_infer_request_in_place(std::move(w.body), w.header_length, dlrm_spec(), {});
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    const InferRequest moved = std::move(r).value();
    CHECK(moved.batch.sparse.indices.empty());
    CHECK(moved.ids_in_place.empty());
    REQUIRE(moved.narrow_ids.size() == want.sparse.indices.size());
    if (moved.wire) {
      ++in_place;
      CHECK(moved.own_narrow_ids == nullptr);
      const char* body = moved.wire->data();
      const auto* ids = reinterpret_cast<const char*>(moved.narrow_ids.data());
      CHECK((ids >= body && ids < body + moved.wire->size()));
    } else {
      CHECK(moved.narrow_ids.data() == moved.own_narrow_ids.get());
    }
    const BatchView v = moved.view();
    CHECK(v.indices.empty());
    CHECK(ids_of(v) == want.sparse.indices);

    // An id outside its table is refused in place as when copied.
    json bad = req;
    input(bad, "sparse_indices")["data"][5] = 100;
    Wire wb = to_binary(bad);
    wb.body.insert(*wb.header_length, std::string(pad, ' '));
    *wb.header_length += pad;
    Result<InferRequest> rb =
        parse_infer_request_in_place(std::move(wb.body), wb.header_length, dlrm_spec(), {});
    REQUIRE_FALSE(rb.has_value());
    CHECK(rb.status().message().find("sparse_indices[5] = 100 is outside table") == 0);
  }
  CHECK(in_place == 2);
}

TEST_CASE("a header length equal to a JSON-only body is accepted") {
  const std::string body = good_request().dump();
  Result<InferRequest> r = parse_infer_request(body, body.size(), dlrm_spec(), {});
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  check_same(*r, expected_batch());
}

TEST_CASE("a model without dense features takes an empty dense input or none") {
  const engine::ModelSpec spec = ncf_spec();
  json req = json::parse(R"({"inputs": [
      {"name": "dense", "datatype": "FP32", "shape": [3, 0], "data": []},
      {"name": "sparse_lengths", "datatype": "INT32", "shape": [4, 3],
       "data": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]},
      {"name": "sparse_indices", "datatype": "INT64", "shape": [12],
       "data": [0, 1, 4, 5, 0, 2, 6, 3, 1, 7, 0, 2]}]})");
  const Batch want = engine::batch_from_json(spec, json::parse(R"({"dense": [],
      "sparse_lengths": [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
      "sparse_indices": [0, 1, 4, 5, 0, 2, 6, 3, 1, 7, 0, 2]})"))
                         .value();
  SUBCASE("dense [N, 0] with empty data") {
    Result<InferRequest> r = parse(req, spec);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, want);
  }
  SUBCASE("dense [N, 0] with nested empty rows") {
    input(req, "dense")["data"] = json::parse("[[], [], []]");
    Result<InferRequest> r = parse(req, spec);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, want);
  }
  SUBCASE("dense [N, 0] in binary form (zero bytes)") {
    Result<InferRequest> r = parse(to_binary(req), spec);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, want);
  }
  SUBCASE("no dense input: N comes from sparse_lengths") {
    req["inputs"].erase(0);
    Result<InferRequest> r = parse(req, spec);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    check_same(*r, want);
  }
}

TEST_CASE("a model without tables may leave out the sparse inputs") {
  const engine::ModelSpec spec = engine::parse_model_spec(json::parse(R"({"name": "w",
      "type": "wnd", "dense_features": 2, "embedding_dim": 4, "tables": [], "mlp": [1]})"))
                                     .value();
  const json req = json::parse(R"({"inputs": [
      {"name": "dense", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]})");
  Result<InferRequest> r = parse(req, spec);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  CHECK(r->batch.batch_size == 2);
  CHECK(r->batch.num_tables == 0);
  CHECK(r->batch.sparse.offsets == std::vector<int64_t>{0});
  CHECK(r->batch.dense == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("binary output is asked for per output or for the whole request") {
  json req = good_request();
  req["outputs"][0]["parameters"]["binary_data"] = true;
  CHECK(parse(req, dlrm_spec())->binary_output);
  req = good_request();
  req["parameters"]["binary_data_output"] = true;
  CHECK(parse(req, dlrm_spec())->binary_output);
  req["outputs"][0]["parameters"]["binary_data"] = false;  // the output's own setting wins
  CHECK_FALSE(parse(req, dlrm_spec())->binary_output);
}

TEST_CASE("a request exactly at the limits is accepted") {
  json req = good_request();
  InferLimits limits;
  limits.max_items = 2;
  limits.max_elements = 6 + 4 + 6;
  limits.max_json_depth = 4;  // request, inputs, input, data
  Result<InferRequest> r = parse_infer_request(req.dump(), std::nullopt, dlrm_spec(), limits);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
}

TEST_CASE("encode_infer_response writes scores as JSON data") {
  const std::vector<float> scores = {0.1f, -2.5f, 3e-8f, 1e30f, 7.0f, 0.25f};
  const EncodedResponse r = encode_infer_response("tiny", "q7", scores, 3, 2, false);
  CHECK(r.content_type == "application/json");
  CHECK_FALSE(r.header_length.has_value());
  const json j = json::parse(r.body);
  CHECK(j["model_name"] == "tiny");
  CHECK(j["model_version"] == "1");
  CHECK(j["id"] == "q7");
  REQUIRE(j["outputs"].size() == 1);
  const json& out = j["outputs"][0];
  CHECK(out["name"] == "scores");
  CHECK(out["datatype"] == "FP32");
  CHECK(out["shape"] == json::array({3, 2}));
  CHECK_FALSE(out.contains("parameters"));
  REQUIRE(out["data"].size() == scores.size());
  for (size_t i = 0; i < scores.size(); ++i) CHECK(out["data"][i].get<float>() == scores[i]);
  CHECK(r.body.find("0.1,") != std::string::npos);  // shortest form, not widened to double

  const EncodedResponse anon = encode_infer_response("tiny", "", scores, 3, 2, false);
  CHECK_FALSE(json::parse(anon.body).contains("id"));
  const std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
  CHECK(json::parse(encode_infer_response("m", "", nan, 1, 1, false).body)["outputs"][0]["data"][0]
            .is_null());
}

TEST_CASE("encode_infer_response writes binary scores after the JSON header") {
  const std::vector<float> scores = {0.1f, -2.5f, 3e-8f, 1e30f, 7.0f, 0.25f};
  const EncodedResponse r = encode_infer_response("tiny", "q\"7", scores, 2, 3, true);
  CHECK(r.content_type == "application/octet-stream");
  REQUIRE(r.header_length.has_value());
  REQUIRE(r.body.size() == *r.header_length + scores.size() * 4);
  const json j = json::parse(r.body.substr(0, *r.header_length));
  CHECK(j["id"] == "q\"7");
  const json& out = j["outputs"][0];
  CHECK(out["shape"] == json::array({2, 3}));
  CHECK_FALSE(out.contains("data"));
  CHECK(out["parameters"]["binary_data_size"] == scores.size() * 4);
  std::string want;
  for (float v : scores) append_little_endian(want, v);
  CHECK(r.body.substr(*r.header_length) == want);
}

TEST_CASE("model_metadata lists the tensors with -1 for the batch dimension") {
  const json dlrm = model_metadata(dlrm_spec());
  CHECK(dlrm == json::parse(R"({"name": "tiny", "versions": ["1"], "platform": "recsched",
      "inputs": [{"name": "dense", "datatype": "FP32", "shape": [-1, 3]},
                 {"name": "sparse_lengths", "datatype": "INT32", "shape": [2, -1]},
                 {"name": "sparse_indices", "datatype": "INT64", "shape": [-1]}],
      "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 1]}]})"));
  const json ncf = model_metadata(ncf_spec());
  REQUIRE(ncf["inputs"].size() == 2);  // no dense input for a model without dense features
  CHECK(ncf["inputs"][0]["shape"] == json::array({4, -1}));
}

TEST_CASE("bad requests are refused with kInvalidArgument and a message that says why") {
  const engine::ModelSpec dlrm = dlrm_spec();
  const engine::ModelSpec ncf = ncf_spec();
  InferLimits limits;
  limits.max_items = 16;
  limits.max_elements = 100;
  limits.max_json_depth = 8;

  struct Case {
    std::string name;
    Wire wire;
    std::string expect;
    const engine::ModelSpec* spec;
  };
  std::vector<Case> cases;
  auto raw = [&](std::string name, std::string body, std::optional<size_t> header_length,
                 std::string expect) {
    cases.push_back({std::move(name), {std::move(body), header_length}, std::move(expect), &dlrm});
  };
  auto edit = [&](std::string name, const std::function<void(json&)>& change, std::string expect,
                  const engine::ModelSpec* spec = nullptr) {
    json req = good_request();
    change(req);
    cases.push_back(
        {std::move(name), {req.dump(), std::nullopt}, std::move(expect), spec ? spec : &dlrm});
  };
  auto binary = [&](std::string name, Wire wire, std::string expect) {
    cases.push_back({std::move(name), std::move(wire), std::move(expect), &dlrm});
  };
  const std::string good = good_request().dump();
  const Wire good_wire = to_binary(good_request());

  // The body and its JSON header.
  raw("malformed JSON", R"({"inputs": [)", std::nullopt, "request is not valid JSON");
  raw("empty body", "", std::nullopt, "request is not valid JSON");
  raw("not an object", "[1, 2]", std::nullopt, "request must be a JSON object");
  raw("truncated JSON body", good.substr(0, good.size() / 2), std::nullopt, "not valid JSON");
  raw("JSON too deep", R"({"id": "x", "a": [[[[[[[[1]]]]]]]]})", std::nullopt,
      "nests deeper than 8 levels");
  raw("JSON 100000 levels deep",
      "{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}", std::nullopt,
      "nests deeper than 8 levels");
  raw("number overflow", R"({"inputs": [], "x": 1e400})", std::nullopt, "number overflow");
  raw("header length past the body", good, good.size() + 1,
      "Inference-Header-Content-Length " + std::to_string(good.size() + 1) +
          " exceeds the body's " + std::to_string(good.size()) + " bytes");
  raw("header length cutting the JSON", good, good.size() - 5, "not valid JSON");
  raw("trailing bytes after a JSON-only header", good + "abc", good.size(), "3 trailing bytes");

  // The binary extension.
  {
    Wire w = good_wire;
    w.body.resize(w.body.size() - 3);
    binary("truncated binary data", w, "input 'sparse_indices': binary data truncated");
  }
  {
    Wire w = good_wire;
    w.body += "xyzw";
    binary("trailing bytes after binary data", w, "4 trailing bytes");
  }
  binary("binary_data_size not shape x dtype",
         to_binary(good_request(), {},
                   [](json& r) { input(r, "dense")["parameters"]["binary_data_size"] = 20; }),
         "input 'dense': binary_data_size 20 does not match shape [2, 3] of FP32 (24 bytes)");
  binary("binary_data_size without the header length",
         {good_wire.body.substr(0, *good_wire.header_length), std::nullopt},
         "binary_data_size needs the Inference-Header-Content-Length header");
  binary("negative binary_data_size",
         to_binary(good_request(), {},
                   [](json& r) { input(r, "dense")["parameters"]["binary_data_size"] = -24; }),
         "binary_data_size must be a non-negative integer");
  binary("both data and binary_data_size",
         to_binary(good_request(), {},
                   [](json& r) { input(r, "sparse_indices")["data"] = json::array(); }),
         "input 'sparse_indices': has both 'data' and binary_data_size");
  binary("negative length in binary data", to_binary([] {
           json r = good_request();
           input(r, "sparse_lengths")["data"][3] = -3;
           return r;
         }()),
         "input 'sparse_lengths': element 3 is -3, a negative length");
  binary("NaN in binary dense data", to_binary([] {
           json r = good_request();
           input(r, "dense")["data"][4] = std::numeric_limits<double>::quiet_NaN();
           return r;
         }()),
         "input 'dense': element 4 is not a finite FP32 value");

  // Request keys.
  edit(
      "id not a string", [](json& r) { r["id"] = 7; }, "'id' must be a string");
  edit(
      "no inputs", [](json& r) { r.erase("inputs"); }, "request has no 'inputs'");
  edit(
      "inputs not an array", [](json& r) { r["inputs"] = json::object(); },
      "'inputs' must be an array");
  edit(
      "input without a name", [](json& r) { r["inputs"][1].erase("name"); },
      "inputs[1] must be an object with a name");
  edit(
      "sla_ms negative", [](json& r) { r["parameters"]["sla_ms"] = -5; },
      "parameters.sla_ms must be a positive number");
  edit(
      "sla_ms zero", [](json& r) { r["parameters"]["sla_ms"] = 0; },
      "parameters.sla_ms must be a positive number");
  edit(
      "sla_ms a string", [](json& r) { r["parameters"]["sla_ms"] = "25"; },
      "parameters.sla_ms must be a positive number");
  edit(
      "priority a float", [](json& r) { r["parameters"]["priority"] = 1.5; },
      "parameters.priority must be an integer");
  edit(
      "priority too large", [](json& r) { r["parameters"]["priority"] = 1ll << 40; },
      "parameters.priority must be an integer");
  edit(
      "parameters not an object", [](json& r) { r["parameters"] = json::array(); },
      "'parameters' must be an object");
  edit(
      "binary_data_output not a bool", [](json& r) { r["parameters"]["binary_data_output"] = 1; },
      "binary_data_output must be true or false");
  edit(
      "unknown output", [](json& r) { r["outputs"][0]["name"] = "probs"; },
      "unknown output 'probs'");
  edit(
      "binary_data not a bool",
      [](json& r) { r["outputs"][0]["parameters"]["binary_data"] = "yes"; },
      "output 'scores': binary_data must be true or false");

  // Inputs: names, datatypes, shapes.
  edit(
      "unknown input", [](json& r) { input(r, "dense")["name"] = "dense2"; },
      "unknown input 'dense2'");
  edit(
      "unknown input with a long non-ASCII name",
      [](json& r) { input(r, "dense")["name"] = std::string(1000, 'x') + "\u00e9"; },
      "unknown input 'xxxx");
  raw("unterminated huge string", "{\"id\": \"" + std::string(100000, 'y') + "\xff", std::nullopt,
      "request is not valid JSON");
  edit(
      "duplicate input", [](json& r) { r["inputs"].push_back(r["inputs"][0]); },
      "input 'dense': appears twice");
  edit(
      "missing dense", [](json& r) { r["inputs"].erase(0); },
      "missing input 'dense' (model 'tiny' has 3 dense features)");
  edit(
      "missing sparse_indices", [](json& r) { r["inputs"].erase(2); },
      "missing input 'sparse_indices' (model 'tiny' has 2 tables)");
  edit(
      "missing sparse_lengths (ncf)",
      [](json& r) {
        r["inputs"].erase(1);
        r["inputs"].erase(0);
      },
      "missing input 'sparse_lengths' (model 'ncf4' has 4 tables)", &ncf);
  edit(
      "dense not FP32", [](json& r) { input(r, "dense")["datatype"] = "FP64"; },
      "input 'dense': datatype FP64, expected FP32");
  edit(
      "sparse_lengths INT64", [](json& r) { input(r, "sparse_lengths")["datatype"] = "INT64"; },
      "input 'sparse_lengths': datatype INT64, expected INT32");
  edit(
      "sparse_indices FP32", [](json& r) { input(r, "sparse_indices")["datatype"] = "FP32"; },
      "input 'sparse_indices': datatype FP32, expected INT64 or INT32");
  edit(
      "shape with a negative dim",
      [](json& r) {
        input(r, "dense")["shape"] = {-2, 3};
      },
      "input 'dense': 'shape' must be an array of non-negative integers");
  edit(
      "shape with a float dim",
      [](json& r) {
        input(r, "dense")["shape"] = {2.0, 3};
      },
      "input 'dense': 'shape' must be an array of non-negative integers");
  edit(
      "dense of wrong rank", [](json& r) { input(r, "dense")["shape"] = {6}; },
      "input 'dense': shape [6] does not match [N, D=3]");
  edit(
      "wrong D",
      [](json& r) {
        input(r, "dense")["shape"] = {2, 4};
      },
      "input 'dense': shape [2, 4] does not match [N, D=3]");
  edit(
      "ncf dense with a feature",
      [](json& r) {
        input(r, "dense")["shape"] = {2, 1};
        input(r, "dense")["data"] = {1, 2};
      },
      "input 'dense': shape [2, 1] does not match [N, D=0]", &ncf);
  edit(
      "wrong T",
      [](json& r) {
        input(r, "sparse_lengths")["shape"] = {3, 2};
      },
      "input 'sparse_lengths': shape [3, 2] does not match [T=2, N=2]");
  edit(
      "N differs between inputs",
      [](json& r) {
        input(r, "sparse_lengths")["shape"] = {2, 3};
      },
      "input 'sparse_lengths': shape [2, 3] does not match [T=2, N=2]");
  edit(
      "sparse_indices of rank 2",
      [](json& r) {
        input(r, "sparse_indices")["shape"] = {2, 3};
      },
      "input 'sparse_indices': shape [2, 3] does not match [L]");
  edit(
      "N = 0",
      [](json& r) {
        input(r, "dense")["shape"] = {0, 3};
        input(r, "dense")["data"] = json::array();
      },
      "input 'dense': N = 0; a request needs at least one item");
  edit(
      "N over max_items",
      [](json& r) {
        input(r, "dense")["shape"] = {17, 3};
      },
      "input 'dense': N = 17 exceeds the limit of 16 items");
  edit(
      "elements over max_elements",
      [](json& r) { input(r, "sparse_indices")["shape"] = {1ull << 62}; },
      "input 'sparse_indices': shape [4611686018427387904] takes the request over the limit of "
      "100 elements");
  edit(
      "shared memory input without shared memory",
      [](json& r) {
        input(r, "dense")["parameters"] = {{"shared_memory_region", "r0"},
                                           {"shared_memory_byte_size", 24}};
        input(r, "dense").erase("data");
      },
      "input 'dense': shared memory is not available here");
  edit(
      "shared memory region without its byte size",
      [](json& r) { input(r, "dense")["parameters"]["shared_memory_region"] = "r0"; },
      "input 'dense': shared_memory_region and shared_memory_byte_size go together");

  // Data.
  edit(
      "no data", [](json& r) { input(r, "dense").erase("data"); },
      "input 'dense': has neither 'data' nor binary_data_size");
  edit(
      "data not an array", [](json& r) { input(r, "dense")["data"] = 1; },
      "input 'dense': 'data' must be an array");
  edit(
      "flat data count mismatch", [](json& r) { input(r, "dense")["data"].erase(5); },
      "input 'dense': 'data' holds 5 values, shape [2, 3] needs 6");
  edit(
      "nested data not matching the shape",
      [](json& r) { input(r, "dense")["data"] = json::parse("[[1, 2, 3], [4, 5]]"); },
      "input 'dense': data[1] has 2 entries, shape [2, 3] needs 3");
  edit(
      "string in data", [](json& r) { input(r, "dense")["data"][2] = "x"; },
      "input 'dense': element 2 is not a number");
  edit(
      "FP32 overflow", [](json& r) { input(r, "dense")["data"][1] = 1e39; },
      "input 'dense': element 1 is outside the FP32 range");
  edit(
      "float in INT64 data", [](json& r) { input(r, "sparse_indices")["data"][0] = 1.5; },
      "input 'sparse_indices': element 0 is not an integer");
  edit(
      "bool in INT32 data", [](json& r) { input(r, "sparse_lengths")["data"][0] = true; },
      "input 'sparse_lengths': element 0 is not an integer");
  edit(
      "INT32 overflow", [](json& r) { input(r, "sparse_lengths")["data"][2] = 3000000000ll; },
      "input 'sparse_lengths': element 2 = 3000000000 is outside the INT32 range");
  edit(
      "negative length", [](json& r) { input(r, "sparse_lengths")["data"][1] = -1; },
      "input 'sparse_lengths': element 1 is -1, a negative length");
  edit(
      "lengths not adding up to L",
      [](json& r) {
        input(r, "sparse_indices")["shape"] = {5};
        input(r, "sparse_indices")["data"].erase(5);
      },
      "input 'sparse_indices': shape [5] holds 5 ids but sparse_lengths add up to 6");
  edit(
      "id out of range", [](json& r) { input(r, "sparse_indices")["data"][3] = 20; },
      "sparse_indices[3] = 20 is outside table 1 (20 rows)");
  edit(
      "negative id", [](json& r) { input(r, "sparse_indices")["data"][0] = -1; },
      "sparse_indices[0] = -1 is outside table 0 (10 rows)");

  CHECK(cases.size() >= 25);
  std::set<std::string> names;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CHECK(names.insert(c.name).second);
    Result<InferRequest> r = parse(c.wire, *c.spec, limits);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    CHECK_MESSAGE(r.status().message().find(c.expect) != std::string::npos, r.status().message());
    // One short line of printable ASCII, whatever the body held.
    const std::string msg = r.status().message();
    CHECK(msg.size() < 400);
    CHECK(std::all_of(msg.begin(), msg.end(), [](char ch) { return ch >= 0x20 && ch < 0x7f; }));
  }
}

}  // namespace
}  // namespace recsched::daemon

namespace recsched::daemon {
namespace {

// Regions in this process's memory, by name: what the codec reads through, without a daemon.
class FakeSharedMemory final : public SharedMemoryReader {
 public:
  std::map<std::string, std::string, std::less<>> regions;
  mutable int reads = 0;
  Status read(std::string_view region, uint64_t offset, std::span<std::byte> into) const override {
    ++reads;
    const auto it = regions.find(region);
    if (it == regions.end()) return invalid_argument("no region " + std::string(region));
    if (offset + into.size() > it->second.size()) return invalid_argument("past the end");
    std::memcpy(into.data(), it->second.data() + offset, into.size());
    return Status::ok();
  }
};

// good_request() with the named inputs' data moved into region "r" of `shm` (each at an
// offset after `lead` bytes of padding, the offset left out where it is 0).
json to_shared(json req, FakeSharedMemory& shm, const std::set<std::string>& names, size_t lead) {
  std::string& bytes = shm.regions["r"];
  bytes.assign(lead, '\x7f');
  for (json& in : req["inputs"]) {
    if (!names.count(in["name"].get<std::string>())) continue;
    const size_t start = bytes.size();
    append_data(bytes, in);
    in.erase("data");
    in["parameters"]["shared_memory_region"] = "r";
    in["parameters"]["shared_memory_byte_size"] = bytes.size() - start;
    if (start > 0) in["parameters"]["shared_memory_offset"] = start;
  }
  return req;
}

TEST_CASE("inputs read from shared memory give the same Batch as inline data") {
  const Batch want = expected_batch();
  for (const std::set<std::string>& names :
       {std::set<std::string>{"dense", "sparse_lengths", "sparse_indices"},
        std::set<std::string>{"sparse_indices"}, std::set<std::string>{"dense"}}) {
    for (size_t lead : {0, 3}) {
      CAPTURE(names.size());
      CAPTURE(lead);
      FakeSharedMemory shm;
      const json req = to_shared(good_request(), shm, names, lead);
      // JSON only, or with the other inputs as binary sections after it.
      for (bool binary_rest : {false, true}) {
        if (binary_rest && names.size() == 3) continue;  // nothing left to send inline
        std::set<std::string> rest;
        for (const char* n : {"dense", "sparse_lengths", "sparse_indices"}) {
          if (!names.count(n)) rest.insert(n);
        }
        const Wire w = binary_rest ? to_binary(req, rest) : Wire{req.dump(), std::nullopt};
        Result<InferRequest> r =
            parse_infer_request_in_place(w.body, w.header_length, dlrm_spec(), {}, &shm);
        REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
        const InferRequest got = std::move(r).value();
        const BatchView v = got.view();
        CHECK(std::vector<int64_t>(v.indices.begin(), v.indices.end()) == want.sparse.indices);
        CHECK(std::vector<int64_t>(v.offsets.begin(), v.offsets.end()) == want.sparse.offsets);
        CHECK(std::vector<float>(v.dense.begin(), v.dense.end()) == want.dense);
        CHECK(got.batch.batch_size == 2);
      }
    }
  }
}

// Ids from shared memory are read and checked in chunks of 32 KiB, table by table: a batch
// whose tables hold 12,000 ids each crosses chunk boundaries inside every table, for INT64
// (4,096 ids a chunk) and INT32 (8,192).
TEST_CASE("shared-memory ids across many chunks decode exactly, and a bad one is named as inline") {
  const engine::ModelSpec spec =
      engine::parse_model_spec(json::parse(R"({"name": "wide", "type": "dlrm",
          "dense_features": 2, "embedding_dim": 4, "tables": [1000, 50000, 300],
          "lookups_per_table": 40, "bottom_mlp": [4], "top_mlp": [1]})"))
          .value();
  const Batch want = engine::random_batch(spec, 300, 11);
  REQUIRE(want.sparse.indices.size() == 3 * 12000);
  auto request = [&](const std::string& ids_type) {
    json lengths = json::array();
    for (size_t t = 0; t < 3; ++t) {
      for (size_t b = 0; b < 300; ++b) {
        lengths.push_back(want.sparse.offsets[t * 300 + b + 1] - want.sparse.offsets[t * 300 + b]);
      }
    }
    return json{{"inputs",
                 {{{"name", "dense"}, {"datatype", "FP32"}, {"shape", {300, 2}}, {"data", want.dense}},
                  {{"name", "sparse_lengths"}, {"datatype", "INT32"}, {"shape", {3, 300}},
                   {"data", lengths}},
                  {{"name", "sparse_indices"}, {"datatype", ids_type},
                   {"shape", {want.sparse.indices.size()}}, {"data", want.sparse.indices}}}}};
  };
  for (const std::string ids_type : {"INT64", "INT32"}) {
    CAPTURE(ids_type);
    for (size_t lead : {0, 4}) {
      FakeSharedMemory shm;
      const json req = to_shared(request(ids_type), shm, {"sparse_indices"}, lead);
      Result<InferRequest> r = parse_infer_request(req.dump(), std::nullopt, spec, {}, &shm);
      REQUIRE(r.has_value());
      const BatchView v = r->view();
      CHECK(ids_of(v) == want.sparse.indices);
      CHECK(r->batch.sparse.offsets == want.sparse.offsets);
    }
    // One id out of its table in the middle of table 1's third chunk, and one negative in
    // table 2: refused with the message the same ids inline get (the first one named).
    for (const auto& [at, value] : {std::pair<size_t, int64_t>{12000 + 9000, 50000},
                                    std::pair<size_t, int64_t>{24000 + 4096, -3}}) {
      CAPTURE(at);
      json bad = request(ids_type);
      input(bad, "sparse_indices")["data"][at] = value;
      FakeSharedMemory shm;
      const json r = to_shared(bad, shm, {"sparse_indices"}, 0);
      Result<InferRequest> got = parse_infer_request(r.dump(), std::nullopt, spec, {}, &shm);
      Result<InferRequest> inline_ = parse_infer_request(bad.dump(), std::nullopt, spec, {});
      REQUIRE_FALSE(got.has_value());
      REQUIRE_FALSE(inline_.has_value());
      CHECK(got.status().message() == inline_.status().message());
      CHECK(got.status().message().find("sparse_indices[" + std::to_string(at) + "]") == 0);
    }
  }
}

TEST_CASE("shared-memory inputs are checked as binary data is") {
  FakeSharedMemory shm;
  auto refused = [&](json req) {
    Result<InferRequest> r = parse_infer_request(req.dump(), std::nullopt, dlrm_spec(), {}, &shm);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    return r.status().message();
  };
  const json ok = to_shared(good_request(), shm, {"sparse_indices"}, 0);
  {
    json r = ok;
    input(r, "sparse_indices")["parameters"]["shared_memory_byte_size"] = 40;
    CHECK(refused(r) == "input 'sparse_indices': shared_memory_byte_size 40 does not match shape "
                        "[6] of INT64 (48 bytes)");
  }
  {
    json r = ok;
    input(r, "sparse_indices")["parameters"]["shared_memory_region"] = "gone";
    CHECK(refused(r) == "no region gone");  // the reader's own reason
  }
  {
    json r = ok;
    input(r, "sparse_indices")["parameters"]["shared_memory_offset"] = 8;
    CHECK(refused(r) == "past the end");
  }
  {
    json r = ok;
    input(r, "sparse_indices")["data"] = json::array({1, 2, 3, 4, 5, 6});
    CHECK(refused(r) == "input 'sparse_indices': has shared_memory_region and 'data'");
  }
  {
    json r = ok;
    input(r, "sparse_indices")["parameters"]["shared_memory_offset"] = -1;
    CHECK(refused(r) == "input 'sparse_indices': shared_memory_offset must be a non-negative integer");
  }
  {
    // An id outside its table, read from shared memory, is refused as inline.
    json bad = good_request();
    input(bad, "sparse_indices")["data"][5] = 100;
    FakeSharedMemory other;
    const json r = to_shared(bad, other, {"sparse_indices"}, 0);
    Result<InferRequest> got = parse_infer_request(r.dump(), std::nullopt, dlrm_spec(), {}, &other);
    Result<InferRequest> inline_ = parse_infer_request(bad.dump(), std::nullopt, dlrm_spec(), {});
    REQUIRE_FALSE(got.has_value());
    REQUIRE_FALSE(inline_.has_value());
    CHECK(got.status().message() == inline_.status().message());
  }
  {
    // A non-finite FP32 value read from shared memory is refused.
    json bad = good_request();
    FakeSharedMemory other;
    json r = to_shared(bad, other, {"dense"}, 0);
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(other.regions["r"].data() + 4, &inf, sizeof inf);
    Result<InferRequest> got = parse_infer_request(r.dump(), std::nullopt, dlrm_spec(), {}, &other);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.status().message() == "input 'dense': element 1 is not a finite FP32 value");
  }
}

}  // namespace
}  // namespace recsched::daemon
