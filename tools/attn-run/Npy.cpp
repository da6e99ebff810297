//===- Npy.cpp - NumPy .npy reading and writing ---------------------------===//

#include "Npy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace attnrun;

namespace {

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// Returns the text after `'key':` in a header dict, or npos.
size_t findKey(const std::string &header, const char *key) {
  std::string pattern = std::string("'") + key + "'";
  size_t pos = header.find(pattern);
  if (pos == std::string::npos)
    return pos;
  pos = header.find(':', pos + pattern.size());
  if (pos == std::string::npos)
    return pos;
  return header.find_first_not_of(" ", pos + 1);
}

} // namespace

bool attnrun::npyDescrMatches(const std::string &descr, attnrt_dtype dtype) {
  if (descr.size() != 3 ||
      (descr[0] != '<' && descr[0] != '|' && descr[0] != '='))
    return false;
  std::string kind = descr.substr(1);
  switch (dtype) {
  case ATTNRT_DTYPE_F32:
    return kind == "f4";
  case ATTNRT_DTYPE_F16:
    return kind == "f2";
  case ATTNRT_DTYPE_BF16:
    return kind == "u2" || kind == "V2";
  case ATTNRT_DTYPE_I32:
    return kind == "i4";
  case ATTNRT_DTYPE_I8:
    return kind == "i1";
  case ATTNRT_DTYPE_U8:
    return kind == "u1";
  // Raw bits, or ml_dtypes' float8_e4m3fn ('<V1') / float8_e5m2 ('<f1').
  case ATTNRT_DTYPE_F8E4M3FN:
    return kind == "u1" || kind == "V1";
  case ATTNRT_DTYPE_F8E5M2:
    return kind == "u1" || kind == "f1";
  }
  return false;
}

std::string attnrun::npyDescrFor(attnrt_dtype dtype) {
  switch (dtype) {
  case ATTNRT_DTYPE_F32:
    return "<f4";
  case ATTNRT_DTYPE_F16:
    return "<f2";
  case ATTNRT_DTYPE_BF16:
    return "<u2";
  case ATTNRT_DTYPE_I32:
    return "<i4";
  case ATTNRT_DTYPE_I8:
    return "|i1";
  case ATTNRT_DTYPE_U8:
  case ATTNRT_DTYPE_F8E4M3FN:
  case ATTNRT_DTYPE_F8E5M2:
    return "|u1";
  }
  return "";
}

HostTensor attnrun::loadNpy(const std::string &path, attnrt_dtype dtype,
                            const std::string &argName) {
  std::string where = "argument '" + argName + "' file " + path;
  // Read the preamble and header, then the data straight into the tensor:
  // no second copy of a large input (test/e2e/test_memory.py measures this).
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    throw UsageError(where + ": cannot open (" + std::strerror(errno) +
                     "); check the path");
  size_t fileSize = static_cast<size_t>(in.tellg());
  in.seekg(0);
  char preamble[12] = {};
  in.read(preamble,
          static_cast<std::streamsize>(std::min<size_t>(12, fileSize)));
  if (fileSize < 10 || std::memcmp(preamble, "\x93NUMPY", 6) != 0)
    throw UsageError(where + ": not a .npy file; save it with numpy.save");
  unsigned major = static_cast<unsigned char>(preamble[6]);
  size_t headerLen, headerStart;
  if (major == 1) {
    headerLen = static_cast<unsigned char>(preamble[8]) |
                (static_cast<unsigned char>(preamble[9]) << 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (fileSize < 12)
      throw UsageError(where + ": truncated .npy header");
    headerLen = 0;
    for (int i = 3; i >= 0; --i)
      headerLen =
          (headerLen << 8) | static_cast<unsigned char>(preamble[8 + i]);
    headerStart = 12;
  } else {
    throw UsageError(where + ": unsupported .npy version " +
                     std::to_string(major) + "; save with numpy.save");
  }
  if (headerStart + headerLen > fileSize)
    throw UsageError(where + ": truncated .npy header");
  std::string header(headerLen, '\0');
  in.seekg(static_cast<std::streamoff>(headerStart));
  in.read(header.data(), static_cast<std::streamsize>(headerLen));

  size_t d = findKey(header, "descr");
  size_t f = findKey(header, "fortran_order");
  size_t s = findKey(header, "shape");
  if (d == std::string::npos || f == std::string::npos ||
      s == std::string::npos || header[d] != '\'' || header[s] != '(')
    throw UsageError(where + ": malformed .npy header; save with numpy.save");
  size_t dEnd = header.find('\'', d + 1);
  std::string descr = header.substr(d + 1, dEnd - d - 1);
  if (header.compare(f, 4, "True") == 0)
    throw UsageError(where + ": array is Fortran-ordered; save "
                             "numpy.ascontiguousarray(x) instead");
  if (!npyDescrMatches(descr, dtype))
    throw UsageError(
        where + ": dtype '" + descr + "' does not match the kernel's " +
        attnrt_dtype_name(dtype) + "; expected " + npyDescrFor(dtype) +
        (dtype == ATTNRT_DTYPE_BF16 ? " (raw bits) or ml_dtypes.bfloat16"
         : dtype == ATTNRT_DTYPE_F8E4M3FN
             ? " (raw bits) or ml_dtypes.float8_e4m3fn"
         : dtype == ATTNRT_DTYPE_F8E5M2 ? " (raw bits) or ml_dtypes.float8_e5m2"
                                        : "") +
        " little-endian, convert with x.astype(...)");

  HostTensor t;
  t.dtype = dtype;
  size_t sEnd = header.find(')', s);
  if (sEnd == std::string::npos)
    throw UsageError(where + ": malformed shape in .npy header");
  std::stringstream dims(header.substr(s + 1, sEnd - s - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    size_t b = item.find_first_not_of(" ");
    if (b == std::string::npos)
      continue;
    char *endp = nullptr;
    long long v = std::strtoll(item.c_str() + b, &endp, 10);
    if (v < 0 || endp == item.c_str() + b)
      throw UsageError(where + ": malformed shape '" +
                       header.substr(s, sEnd - s + 1) + "' in .npy header");
    t.shape.push_back(v);
  }
  size_t dataStart = headerStart + headerLen;
  // Guard the byte count against overflow from absurd shapes.
  long double want = t.itemSize();
  for (int64_t v : t.shape)
    want *= v;
  size_t dataBytes = fileSize - dataStart;
  if (want != static_cast<long double>(dataBytes))
    throw UsageError(where + ": holds " + std::to_string(dataBytes) +
                     " data bytes but shape " + shapeText(t.shape) + " needs " +
                     std::to_string(static_cast<double>(want)) +
                     "; the file is truncated or corrupt");
  t.allocate();
  in.seekg(static_cast<std::streamoff>(dataStart));
  in.read(reinterpret_cast<char *>(t.bytes.data()),
          static_cast<std::streamsize>(dataBytes));
  if (!in)
    throw UsageError(where + ": read failed; the file is truncated or corrupt");
  return t;
}

void attnrun::saveNpy(const std::string &path, const HostTensor &t,
                      const std::string &argName) {
  std::string header =
      "{'descr': '" + npyDescrFor(t.dtype) +
      "', 'fortran_order': False, 'shape': " + shapeText(t.shape) + ", }";
  // Pad so that magic + length + header + '\n' is a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out)
    throw UsageError("argument '" + argName + "': cannot write " + path + " (" +
                     std::strerror(errno) + "); check the directory");
  out.write("\x93NUMPY\x01\x00", 8);
  char len[2] = {static_cast<char>(header.size() & 0xff),
                 static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out << header;
  out.write(reinterpret_cast<const char *>(t.bytes.data()),
            t.numel() * t.itemSize());
  if (!out)
    throw UsageError("argument '" + argName + "': failed writing " + path);
}
