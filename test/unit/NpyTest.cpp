//===- NpyTest.cpp - .npy round trips and errors --------------------------===//

#include "Npy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace attnrun;

namespace {

std::string tempPath(const std::string &name) {
  return (std::filesystem::temp_directory_path() /
          ("attnrt-npy-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

HostTensor makeTensor(attnrt_dtype dt, std::vector<int64_t> shape) {
  HostTensor t;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.allocate();
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, 0.25 * static_cast<double>(i) - 3);
  return t;
}

TEST(Npy, RoundTripEveryDtype) {
  for (attnrt_dtype dt : {ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F16, ATTNRT_DTYPE_BF16,
                          ATTNRT_DTYPE_I32}) {
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{2, 3, 4}, {5}, {0, 3}, {}}) {
      HostTensor t = makeTensor(dt, shape);
      std::string path = tempPath("rt.npy");
      saveNpy(path, t, "x");
      // Header + padding must be 64-byte aligned per the format spec.
      EXPECT_EQ((std::filesystem::file_size(path) - t.numel() * t.itemSize()) %
                    64,
                0u);
      HostTensor u = loadNpy(path, dt, "x");
      EXPECT_EQ(u.shape, t.shape);
      for (int64_t i = 0; i < t.numel(); ++i)
        EXPECT_EQ(u.get(i), t.get(i));
      std::remove(path.c_str());
    }
  }
}

void writeRaw(const std::string &path, const std::string &header,
              size_t dataBytes) {
  std::string h = header;
  h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(h.size() & 0xff));
  out.put(static_cast<char>(h.size() >> 8));
  out << h << std::string(dataBytes, '\0');
}

std::string loadError(const std::string &header, size_t bytes,
                      attnrt_dtype dt) {
  std::string path = tempPath("bad.npy");
  writeRaw(path, header, bytes);
  try {
    loadNpy(path, dt, "q");
  } catch (const UsageError &e) {
    std::remove(path.c_str());
    return e.what();
  }
  std::remove(path.c_str());
  return "";
}

TEST(Npy, AcceptsMlDtypesBfloat16) {
  EXPECT_EQ(loadError("{'descr': '<V2', 'fortran_order': False, "
                      "'shape': (2, 3), }",
                      12, ATTNRT_DTYPE_BF16),
            "");
}

TEST(Npy, Errors) {
  EXPECT_NE(loadError("{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (2,), }",
                      16, ATTNRT_DTYPE_F32)
                .find("argument 'q' file"),
            std::string::npos);
  EXPECT_NE(loadError("{'descr': '>f4', 'fortran_order': False, "
                      "'shape': (2,), }",
                      8, ATTNRT_DTYPE_F32)
                .find("dtype '>f4' does not match the kernel's f32"),
            std::string::npos);
  EXPECT_NE(loadError("{'descr': '<f4', 'fortran_order': True, "
                      "'shape': (2, 2), }",
                      16, ATTNRT_DTYPE_F32)
                .find("Fortran-ordered"),
            std::string::npos);
  EXPECT_NE(loadError("{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (2, 2), }",
                      12, ATTNRT_DTYPE_F32)
                .find("truncated"),
            std::string::npos);
  try {
    loadNpy("/nonexistent.npy", ATTNRT_DTYPE_F32, "k");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const UsageError &e) {
    EXPECT_NE(std::string(e.what()).find("argument 'k' file /nonexistent.npy"),
              std::string::npos);
  }
}

TEST(Half, ConversionsRoundToNearestEven) {
  EXPECT_EQ(floatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalf(5.9604645e-8f), 0x0001);      // smallest subnormal
  EXPECT_EQ(floatToHalf(1.0f + 1.0f / 2048), 0x3c00); // tie -> even
  EXPECT_EQ(floatToHalf(1.0f + 3.0f / 2048), 0x3c02); // tie -> even
  EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(NAN))));
  for (uint32_t h = 0; h < 0x7c00; ++h)
    ASSERT_EQ(floatToHalf(halfToFloat(h)), h);
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16ToFloat(0xc040), -3.0f);
  EXPECT_EQ(floatToBf16(1.0f + 1.0f / 256), 0x3f80); // tie -> even
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
}

} // namespace
