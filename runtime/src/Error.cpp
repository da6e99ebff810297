//===- Error.cpp - attnrt error reporting ---------------------------------===//
//
// Thread-local last-error message and the name tables of the C API enums.
//
//===----------------------------------------------------------------------===//

#include "Error.h"

using namespace attnrt;

// Thread-local so concurrent callers on different threads never see each
// other's messages.
static thread_local std::string lastError;

attnrt_status attnrt::setError(attnrt_status status,
                               const std::string &message) {
  lastError = message;
  return status;
}

void attnrt::clearError() { lastError.clear(); }

extern "C" const char *attnrt_last_error(void) { return lastError.c_str(); }

extern "C" const char *attnrt_status_string(attnrt_status status) {
  switch (status) {
  case ATTNRT_OK:
    return "ok";
  case ATTNRT_ERR_INVALID_ARGUMENT:
    return "invalid argument";
  case ATTNRT_ERR_IO:
    return "i/o error";
  case ATTNRT_ERR_MANIFEST:
    return "invalid manifest";
  case ATTNRT_ERR_UNSUPPORTED:
    return "unsupported artifact";
  case ATTNRT_ERR_LIBRARY:
    return "kernel library error";
  case ATTNRT_ERR_NOT_FOUND:
    return "kernel not found";
  case ATTNRT_ERR_VALIDATION:
    return "argument validation failed";
  case ATTNRT_ERR_OUT_OF_PAGES:
    return "out of pages";
  case ATTNRT_ERR_CUDA:
    return "CUDA driver error";
  }
  return "unknown status";
}

extern "C" const char *attnrt_dtype_name(attnrt_dtype dtype) {
  switch (dtype) {
  case ATTNRT_DTYPE_F32:
    return "f32";
  case ATTNRT_DTYPE_F16:
    return "f16";
  case ATTNRT_DTYPE_BF16:
    return "bf16";
  case ATTNRT_DTYPE_I32:
    return "i32";
  case ATTNRT_DTYPE_I8:
    return "i8";
  case ATTNRT_DTYPE_U8:
    return "u8";
  case ATTNRT_DTYPE_F8E4M3FN:
    return "f8e4m3fn";
  case ATTNRT_DTYPE_F8E5M2:
    return "f8e5m2";
  }
  return "?";
}

extern "C" int64_t attnrt_dtype_size(attnrt_dtype dtype) {
  switch (dtype) {
  case ATTNRT_DTYPE_F32:
  case ATTNRT_DTYPE_I32:
    return 4;
  case ATTNRT_DTYPE_F16:
  case ATTNRT_DTYPE_BF16:
    return 2;
  case ATTNRT_DTYPE_I8:
  case ATTNRT_DTYPE_U8:
  case ATTNRT_DTYPE_F8E4M3FN:
  case ATTNRT_DTYPE_F8E5M2:
    return 1;
  }
  return 0;
}

extern "C" const char *attnrt_dir_name(attnrt_dir dir) {
  switch (dir) {
  case ATTNRT_DIR_IN:
    return "in";
  case ATTNRT_DIR_OUT:
    return "out";
  case ATTNRT_DIR_INOUT:
    return "inout";
  }
  return "unknown";
}

extern "C" const char *attnrt_role_name(attnrt_role role) {
  switch (role) {
  case ATTNRT_ROLE_QUERY:
    return "query";
  case ATTNRT_ROLE_KEY:
    return "key";
  case ATTNRT_ROLE_VALUE:
    return "value";
  case ATTNRT_ROLE_CU_SEQLENS_Q:
    return "cu_seqlens_q";
  case ATTNRT_ROLE_CU_SEQLENS_K:
    return "cu_seqlens_k";
  case ATTNRT_ROLE_OUTPUT:
    return "output";
  case ATTNRT_ROLE_LSE:
    return "lse";
  case ATTNRT_ROLE_K_PAGES:
    return "k_pages";
  case ATTNRT_ROLE_V_PAGES:
    return "v_pages";
  case ATTNRT_ROLE_K_SCALE:
    return "k_scale";
  case ATTNRT_ROLE_V_SCALE:
    return "v_scale";
  case ATTNRT_ROLE_K_MIN:
    return "k_min";
  case ATTNRT_ROLE_V_MIN:
    return "v_min";
  case ATTNRT_ROLE_KV_INDPTR:
    return "kv_indptr";
  case ATTNRT_ROLE_KV_INDICES:
    return "kv_indices";
  case ATTNRT_ROLE_KV_LAST_PAGE_LEN:
    return "kv_last_page_len";
  case ATTNRT_ROLE_QO_INDPTR:
    return "qo_indptr";
  case ATTNRT_ROLE_K_NEW:
    return "k_new";
  case ATTNRT_ROLE_V_NEW:
    return "v_new";
  case ATTNRT_ROLE_SLOT_MAPPING:
    return "slot_mapping";
  case ATTNRT_ROLE_PARTIAL_O:
    return "partial_o";
  case ATTNRT_ROLE_PARTIAL_LSE:
    return "partial_lse";
  case ATTNRT_ROLE_K_RECENT:
    return "k_recent";
  case ATTNRT_ROLE_V_RECENT:
    return "v_recent";
  case ATTNRT_ROLE_RING_SLOTS:
    return "ring_slots";
  case ATTNRT_ROLE_KV_RINGS:
    return "kv_rings";
  case ATTNRT_ROLE_BLOCK_OFFSETS:
    return "block_offsets";
  case ATTNRT_ROLE_BLOCK_INDICES:
    return "block_indices";
  case ATTNRT_ROLE_BLOCK_FULL:
    return "block_full";
  case ATTNRT_ROLE_K_PAGE_MAX:
    return "k_page_max";
  case ATTNRT_ROLE_K_PAGE_MIN:
    return "k_page_min";
  }
  return "?";
}
