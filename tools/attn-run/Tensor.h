//===- Tensor.h - host tensors and f16/bf16 conversion ----------*- C++ -*-===//
//
// attn-run keeps every argument as raw bytes in the kernel's element type, so
// what the kernel reads is exactly what the reference reads (after widening).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRUN_TENSOR_H
#define ATTNRUN_TENSOR_H

#include "attnrt/attnrt.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace attnrun {

inline float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  uint32_t bits = exp == 31 ? sign | 0x7f800000u | (mant << 13)
                            : sign | ((exp - 15 + 127) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// Round to nearest even, like the hardware conversion.
inline uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) // inf, nan
    return sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0);
  if (ax >= 0x477ff000) // rounds to >= 65536: overflow
    return sign | 0x7c00;
  if (ax < 0x38800000) { // below the smallest normal half: units of 2^-24
    float a;
    std::memcpy(&a, &ax, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  uint32_t h = ((((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffff) >> 13));
  uint32_t rest = ax & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
    ++h; // a carry into the exponent is the correct result
  return sign | static_cast<uint16_t>(h);
}

inline float bf16ToFloat(uint16_t b) {
  uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t floatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000)
    return static_cast<uint16_t>((x >> 16) | 0x40);
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/// A dense row-major tensor owned by attn-run.
struct HostTensor {
  attnrt_dtype dtype = ATTNRT_DTYPE_F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape)
      n *= s;
    return n;
  }
  int64_t itemSize() const { return attnrt_dtype_size(dtype); }
  /// Allocates at least one word so data() is never null (attnrt rejects
  /// null data even for empty tensors).
  void allocate() {
    bytes.assign(std::max<int64_t>(8, numel() * itemSize()), 0);
  }
  void *data() { return bytes.data(); }
  const void *data() const { return bytes.data(); }

  double get(int64_t i) const {
    const unsigned char *p = bytes.data() + i * itemSize();
    uint16_t u16;
    float f32;
    int32_t i32;
    switch (dtype) {
    case ATTNRT_DTYPE_F32:
      std::memcpy(&f32, p, 4);
      return f32;
    case ATTNRT_DTYPE_F16:
      std::memcpy(&u16, p, 2);
      return halfToFloat(u16);
    case ATTNRT_DTYPE_BF16:
      std::memcpy(&u16, p, 2);
      return bf16ToFloat(u16);
    case ATTNRT_DTYPE_I32:
      std::memcpy(&i32, p, 4);
      return i32;
    }
    return 0;
  }
  /// Stores v rounded once to the element type.
  void set(int64_t i, double v) {
    unsigned char *p = bytes.data() + i * itemSize();
    uint16_t u16;
    float f32 = static_cast<float>(v);
    int32_t i32;
    switch (dtype) {
    case ATTNRT_DTYPE_F32:
      std::memcpy(p, &f32, 4);
      break;
    case ATTNRT_DTYPE_F16:
      u16 = floatToHalf(f32);
      std::memcpy(p, &u16, 2);
      break;
    case ATTNRT_DTYPE_BF16:
      u16 = floatToBf16(f32);
      std::memcpy(p, &u16, 2);
      break;
    case ATTNRT_DTYPE_I32:
      i32 = static_cast<int32_t>(v);
      std::memcpy(p, &i32, 4);
      break;
    }
  }
  std::vector<double> toDouble() const {
    std::vector<double> out(numel());
    for (int64_t i = 0; i < numel(); ++i)
      out[i] = get(i);
    return out;
  }
};

} // namespace attnrun

#endif // ATTNRUN_TENSOR_H
