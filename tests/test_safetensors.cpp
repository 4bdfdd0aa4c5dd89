// safetensors I/O: round trips, files from other writers, corrupt and truncated files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "models/safetensors.h"
#include "tensor/random.h"

using namespace mmrec;

namespace {

std::string tmp_path(const std::string& name) {
  return "/tmp/mmrec_test_st_" + std::to_string(::getpid()) + "_" + name;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A file as another writer would make it: 8-byte length, header, data.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string error_of(const std::string& path) {
  try {
    read_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("safetensors round trip keeps names, order, dtypes, shapes, values and metadata") {
  Generator g(3);
  Tensor a = randn({3, 5}, g);
  Tensor b = randn({7}, g).to(DType::bf16);
  Tensor c = Tensor::from_vector(std::vector<int32_t>{1, -2, 3}, {3});
  Tensor d = Tensor::from_vector(std::vector<int64_t>{1ll << 40, -5}, {2, 1});
  Tensor e = Tensor::full({2, 2}, -3, DType::i8);
  Tensor f = Tensor::full({4}, 200, DType::u8);
  Tensor empty = Tensor::zeros({0, 4});
  Tensor scalar = Tensor::full({}, 2.5);
  Tensor view = randn({4, 6}, g).transpose(0, 1);  // non-contiguous: written in row-major order
  const std::string p = tmp_path("roundtrip.safetensors");
  write_safetensors(p,
                    {{"z.a", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}, {"f", f}, {"empty", empty},
                     {"scalar", scalar}, {"view", view}},
                    {{"config", "{\"dim\": 4}"}, {"note", "x"}});
  // The data section starts 8-byte aligned.
  const std::string bytes = read_bytes(p);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  CHECK(hlen % 8 == 0);
  Safetensors st = read_safetensors(p);
  REQUIRE(st.tensors.size() == 9);
  const char* order[] = {"z.a", "b", "c", "d", "e", "f", "empty", "scalar", "view"};
  for (size_t i = 0; i < 9; ++i) CHECK(st.tensors[i].first == order[i]);
  CHECK(st.metadata.at("config") == "{\"dim\": 4}");
  CHECK(st.metadata.at("note") == "x");
  for (auto& [name, want] : std::vector<NamedTensor>{{"z.a", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e},
                                                     {"f", f}, {"empty", empty}, {"scalar", scalar},
                                                     {"view", view}}) {
    CAPTURE(name);
    Tensor got = st.get(name);
    CHECK(got.dtype() == want.dtype());
    CHECK(got.shape() == want.shape());
    for (int64_t i = 0; i < want.numel(); ++i) CHECK(got.flat_at(i) == want.flat_at(i));
  }
  CHECK(st.has("b"));
  CHECK_FALSE(st.has("nope"));
  CHECK_THROWS_WITH_AS(st.get("nope"), ("safetensors '" + p + "': no tensor named 'nope'").c_str(), Error);
  // No temporary file is left behind, and overwriting replaces the file.
  CHECK(::access((p + ".tmp." + std::to_string(::getpid())).c_str(), F_OK) != 0);
  write_safetensors(p, {{"only", a}});
  CHECK(read_safetensors(p).tensors.size() == 1);
  CHECK(read_safetensors(p).metadata.empty());
  std::remove(p.c_str());
}

TEST_CASE("write_safetensors rejects bad input and unwritable paths") {
  Tensor a = Tensor::zeros({2});
  const std::string p = tmp_path("bad.safetensors");
  CHECK_THROWS_WITH_AS(write_safetensors(p, {{"a", a}, {"a", a}}),
                       "write_safetensors: tensor name 'a' appears twice", Error);
  CHECK_THROWS_WITH_AS(write_safetensors(p, {{"__metadata__", a}}),
                       "write_safetensors: '__metadata__' is not a valid tensor name", Error);
  CHECK_THROWS_AS(write_safetensors("/nonexistent_dir/x.safetensors", {{"a", a}}), Error);
  CHECK(::access(p.c_str(), F_OK) != 0);
}

TEST_CASE("files from other writers load: any key order, padding, no metadata, unaligned data") {
  const std::string p = tmp_path("foreign.safetensors");
  std::vector<float> fa = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, 6.0f};
  std::vector<int64_t> ib = {7, -8};
  std::vector<uint16_t> hb = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  SUBCASE("reversed key order, spaces after the header, data in another order than the keys") {
    const std::string header =
        "{\"b\":{\"shape\":[2],\"data_offsets\":[24,40],\"dtype\":\"I64\"},"
        "\"a\":{\"data_offsets\":[0,24],\"dtype\":\"F32\",\"shape\":[2,3]},"
        "\"c\" : { \"dtype\" : \"BF16\", \"shape\" : [2, 1], \"data_offsets\" : [40, 44] }}     ";
    write_bytes(p, st_file(header, raw(fa) + raw(ib) + raw(hb)));
    Safetensors st = read_safetensors(p);
    REQUIRE(st.tensors.size() == 3);
    CHECK(st.tensors[0].first == "a");  // file (data) order
    CHECK(st.tensors[1].first == "b");
    CHECK(st.metadata.empty());
    CHECK(st.get("a").shape() == Shape{2, 3});
    CHECK(st.get("a").at({0, 2}) == 3.25);
    CHECK(st.get("b").dtype() == DType::i64);
    CHECK(st.get("b").at({1}) == -8);
    CHECK(st.get("c").dtype() == DType::bf16);
    CHECK(st.get("c").at({1, 0}) == -2.0);
  }
  SUBCASE("metadata last, odd header length (data not aligned), empty tensor") {
    const std::string header =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
        "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[24,24]},"
        "\"__metadata__\":{\"format\":\"pt\"} }";
    REQUIRE(header.size() % 4 != 0);
    write_bytes(p, st_file(header, raw(fa)));
    Safetensors st = read_safetensors(p);
    CHECK(st.metadata.at("format") == "pt");
    CHECK(st.get("a").at({4}) == 5.0);
    CHECK(st.get("e").numel() == 0);
  }
  SUBCASE("an empty file of tensors") {
    write_bytes(p, st_file("{}", ""));
    CHECK(read_safetensors(p).tensors.empty());
  }
  std::remove(p.c_str());
}

TEST_CASE("corrupt headers give clear errors") {
  const std::string p = tmp_path("corrupt.safetensors");
  const std::string w = "read_safetensors: '" + p + "'";
  std::vector<float> data(4, 1.0f);
  auto with_header = [&](const std::string& header) {
    write_bytes(p, st_file(header, raw(data)));
    return error_of(p);
  };
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& off) {
    return "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + off + "}}";
  };
  CHECK(with_header(entry("F16", "[4]", "[0,8]")) ==
        w + ": tensor 't': dtype F16 is not supported (supported: F32, BF16, I8, U8, I32, I64)");
  CHECK(with_header(entry("F64", "[2]", "[0,16]")) ==
        w + ": tensor 't': dtype F64 is not supported (supported: F32, BF16, I8, U8, I32, I64)");
  CHECK(with_header(entry("F32", "[5]", "[0,16]")) ==
        w + ": tensor 't': shape [5] of F32 needs 20 bytes but data_offsets [0, 16] hold 16");
  CHECK(with_header(entry("F32", "[8]", "[0,32]")) ==
        w + ": tensor 't' data_offsets [0, 32] run past the end of the data (16 bytes); the file is truncated");
  CHECK(with_header(entry("F32", "[-1]", "[0,16]")) ==
        w + ": tensor 't' shape: expected a non-negative integer, got -1");
  CHECK(with_header(entry("F32", "[4]", "[16,0]")) == w + ": tensor 't': data_offsets [16, 0] are reversed");
  CHECK(with_header(entry("F32", "[4]", "[0]")) == w + ": tensor 't': data_offsets must be [begin, end], got [0]");
  CHECK(with_header(entry("F32", "4", "[0,16]")) == w + ": tensor 't': shape must be an array, got 4");
  CHECK(with_header(entry("F32", "[4294967296, 4294967296, 4294967296]", "[0,16]")).find("too many elements") !=
        std::string::npos);
  CHECK(with_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4]}}") == w + ": tensor 't': missing \"data_offsets\"");
  CHECK(with_header("{\"t\":[1,2]}") ==
        w + ": tensor 't': expected an object with dtype, shape and data_offsets, got [1,2]");
  CHECK(with_header("[1, 2]") == w + ": the header must be a JSON object");
  CHECK(with_header("{\"__metadata__\": 3}") == w + ": __metadata__ must be an object of strings");
  CHECK(contains(with_header("{\"t\": {\"dtype\": "), w + ": invalid JSON header: "));
  CHECK(contains(with_header(std::string("{\x01\xff}", 4)), w + ": invalid JSON header: "));
  CHECK(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}") ==
        w + ": tensors 'a' and 'b' overlap");
  // Header length beyond the file.
  write_bytes(p, le64(1000) + "{}");
  CHECK(error_of(p) == w + ": header length 1000 exceeds the file size (10 bytes); the file is truncated or not safetensors");
  write_bytes(p, le64(~0ull) + "{}");
  CHECK(contains(error_of(p), "exceeds the file size"));
  write_bytes(p, "abc");
  CHECK(error_of(p) == w + ": file too short for a safetensors header (3 bytes)");
  std::remove(p.c_str());
  CHECK(error_of(p) == w + ": cannot open: No such file or directory");
  CHECK(error_of("/tmp") == "read_safetensors: '/tmp': not a regular file");
}

TEST_CASE("truncated and bit-flipped files never crash") {
  Generator g(5);
  const std::string p = tmp_path("trunc.safetensors");
  write_safetensors(p, {{"w", randn({5, 3}, g)}, {"b", randn({5}, g).to(DType::bf16)}}, {{"k", "v"}});
  const std::string good = read_bytes(p);
  const std::string q = tmp_path("trunc2.safetensors");
  // Every truncation is an error.
  for (size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    write_bytes(q, good.substr(0, n));
    CHECK(!error_of(q).empty());
  }
  // Flipping header bytes gives an error or a valid file, never a crash.
  for (size_t i = 0; i < good.size(); i += 3) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    write_bytes(q, bad);
    try {
      Safetensors st = read_safetensors(q);
      for (auto& [name, t] : st.tensors) (void)t.numel();
    } catch (const Error&) {
    }
  }
  std::remove(p.c_str());
  std::remove(q.c_str());
}
