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

/// 8-bit floats with `mbits` mantissa bits and exponent bias `bias`.
/// e4m3fn (mbits 3, bias 7): no infinities, NaN = S.1111.111, max 448;
/// e5m2 (mbits 2, bias 15): IEEE-like, max finite 57344.
inline float fp8ToFloat(uint8_t b, int mbits, int bias, bool ieee) {
  int ebits = 7 - mbits;
  uint32_t exp = (b >> mbits) & ((1u << ebits) - 1);
  uint32_t mant = b & ((1u << mbits) - 1);
  float sign = (b & 0x80) ? -1.0f : 1.0f;
  uint32_t maxExp = (1u << ebits) - 1;
  if (ieee && exp == maxExp)
    return mant ? NAN : sign * INFINITY;
  if (!ieee && exp == maxExp && mant == (1u << mbits) - 1)
    return NAN;
  if (exp == 0)
    return sign * std::ldexp(static_cast<float>(mant), 1 - bias - mbits);
  return sign * std::ldexp(static_cast<float>(mant | (1u << mbits)),
                           static_cast<int>(exp) - bias - mbits);
}

/// Round to nearest even, saturating to the largest finite value (as
/// docs/kv-cache.md quantizes); NaN stays NaN.
inline uint8_t floatToFp8(float f, int mbits, int bias, bool ieee) {
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  int ebits = 7 - mbits;
  int maxExp = (1 << ebits) - 1;
  if (std::isnan(f))
    return sign | (ieee ? static_cast<uint8_t>((maxExp << mbits) | 2) : 0x7f);
  // Largest finite: e4m3fn S.1111.110, e5m2 S.11110.11.
  uint8_t maxCode =
      ieee ? static_cast<uint8_t>(((maxExp - 1) << mbits) | ((1 << mbits) - 1))
           : 0x7e;
  double maxValue = fp8ToFloat(maxCode, mbits, bias, ieee);
  double a = std::fabs(static_cast<double>(f));
  int e = 0;
  std::frexp(a, &e); // a = m * 2^e, m in [0.5, 1)
  int minExp = 1 - bias;
  int unitExp = std::max(e - 1, minExp) - mbits;      // weight of the last bit
  double q = std::nearbyint(std::ldexp(a, -unitExp)); // ties to even
  double r = std::ldexp(q, unitExp);
  if (a != 0 && !(r <= maxValue)) // also infinities
    return sign | maxCode;
  if (r < std::ldexp(1.0, minExp)) // subnormal (or zero)
    return sign | static_cast<uint8_t>(std::ldexp(r, mbits - minExp));
  std::frexp(r, &e);
  int exp = e - 1;
  uint32_t mant =
      static_cast<uint32_t>(std::ldexp(r, mbits - exp)) - (1u << mbits);
  return sign | static_cast<uint8_t>(((exp + bias) << mbits) | mant);
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
    case ATTNRT_DTYPE_I8:
      return static_cast<int8_t>(*p);
    case ATTNRT_DTYPE_U8:
      return *p;
    case ATTNRT_DTYPE_F8E4M3FN:
      return fp8ToFloat(*p, 3, 7, false);
    case ATTNRT_DTYPE_F8E5M2:
      return fp8ToFloat(*p, 2, 15, true);
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
    case ATTNRT_DTYPE_I8:
      *p = static_cast<unsigned char>(
          static_cast<int8_t>(std::clamp(std::nearbyint(v), -128.0, 127.0)));
      break;
    case ATTNRT_DTYPE_U8:
      *p =
          static_cast<unsigned char>(std::clamp(std::nearbyint(v), 0.0, 255.0));
      break;
    case ATTNRT_DTYPE_F8E4M3FN:
      *p = floatToFp8(f32, 3, 7, false);
      break;
    case ATTNRT_DTYPE_F8E5M2:
      *p = floatToFp8(f32, 2, 15, true);
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
