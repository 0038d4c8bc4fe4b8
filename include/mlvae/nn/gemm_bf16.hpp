/// @file
/// mlvae/nn/gemm_bf16.hpp — the optional bfloat16-input / float32-accumulate product of float
/// layers: C = op(A)·op(B) (+ C) with A and B rounded to bfloat16 (round to nearest even) and the
/// sums kept in float32, on Intel AMX tiles (TDPBF16PS). Off by default: a model selects it with
/// set_precision(Precision::BFloat16) (nn/gemm.hpp routes Gemm<float> here); parameters,
/// gradients and Adam stay float32, only the operands of the products are rounded.
///
/// The kernel computes Cᵀ tile by tile, so a 16x16 float32 accumulator tile (row-major, rows are
/// columns of C) is 16 columns of the column-major C: op(B)ᵀ is packed into row-major tiles of
/// 16 columns x 32 k, op(A) into VNNI tiles (k pairs interleaved, 16 rows x 32 k), both
/// zero-padded to multiples of 32. A register block is 32 x 32 of C (4 accumulator tiles, 2 + 2
/// operand tiles). Threads split the columns of C in blocks of 32; every element is computed the
/// same way whatever the thread count, so results do not depend on it. Packing buffers only grow:
/// after the first call of a shape a product allocates nothing.
///
/// Needs an x86-64 CPU with AMX-BF16 and AVX512-BF16 (Sapphire Rapids and later) and, on Linux,
/// the kernel's permission for the AMX state (requested once with arch_prctl). The functions are
/// compiled with target attributes, so a consumer needs no -march flag. Elsewhere, selecting
/// BFloat16 raises an ArgumentError naming what is missing. docs/architecture.md, "Reduced
/// precision".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && !defined(MLVAE_NO_AMX) && \
    (defined(__clang__) ? (__clang_major__ >= 12) : (defined(__GNUC__) && __GNUC__ >= 11))
/// 1 where the AMX kernel is compiled (x86-64 with GCC >= 11 or Clang >= 12, unless MLVAE_NO_AMX
/// is defined), else 0: then selecting BFloat16 raises an ArgumentError.
#define MLVAE_BF16_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
/// The instruction sets of the AMX kernel, enabled per function (no -march flag needed).
#define MLVAE_BF16_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))
#else
#define MLVAE_BF16_AMX 0
#endif

namespace mlvae {

/// Arithmetic of a model's matrix products: Float32 (the default) or BFloat16 (operands rounded
/// to bfloat16, float32 accumulation; float models on CPUs with AMX-BF16 only).
enum class Precision { Float32, BFloat16 };

/// "float32" or "bf16", as the command-line tools spell it.
inline const char* precision_name(Precision p) { return p == Precision::BFloat16 ? "bf16" : "float32"; }

/// Rounds x to the nearest bfloat16 (ties to even), as the AMX/AVX512-BF16 conversions do: NaN
/// stays a (quiet) NaN, infinities stay, values past the largest bfloat16 round to infinity, and
/// subnormal inputs become zero of the same sign. Returns the bfloat16 bit pattern.
inline std::uint16_t to_bfloat16(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  if ((bits & 0x7f800000u) == 0) return static_cast<std::uint16_t>((bits >> 16) & 0x8000u);  // ±0, subnormals
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

/// The float whose bit pattern is bfloat16 `h` followed by 16 zero bits (exact).
inline float from_bfloat16(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

/// x rounded to bfloat16 and back (see to_bfloat16).
inline float round_to_bfloat16(float x) { return from_bfloat16(to_bfloat16(x)); }

namespace detail {

/// What the CPU and OS offer for the bfloat16 products; `missing` is empty when they can run.
struct Bf16Support {
  bool available = false;
  std::string missing;  ///< e.g. "bfloat16 products need AMX-BF16 (found: avx512f only)"
};

/// Test hook: when true, bf16_support() reports the CPU as lacking AMX (to test the error path on
/// a machine that has it). Not thread-safe; tests only.
inline bool& bf16_hide_amx_for_testing() {
  static bool hide = false;
  return hide;
}

#if MLVAE_BF16_AMX
inline Bf16Support detect_bf16_support() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  bool avx512f = false, avx512bw = false, avx512bf16 = false, amx_tile = false, amx_bf16 = false, os_amx = false;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    avx512f = (b >> 16) & 1u;
    avx512bw = (b >> 30) & 1u;
    amx_bf16 = (d >> 22) & 1u;
    amx_tile = (d >> 24) & 1u;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    if (a >= 1 && __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) avx512bf16 = (a1 >> 5) & 1u;
  }
  unsigned a0 = 0, b0 = 0, c0 = 0, d0 = 0;
  if (amx_tile && __get_cpuid(1, &a0, &b0, &c0, &d0) && ((c0 >> 27) & 1u)) {  // OSXSAVE: XCR0 readable
    unsigned lo = 0, hi = 0;  // XCR0 bits 0-31 and 32-63
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
    const unsigned long long xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    os_amx = ((xcr0 >> 17) & 3u) == 3u;  // XTILECFG and XTILEDATA enabled by the OS
  }
  std::string found;
  for (const auto& [has, name] : {std::pair<bool, const char*>{avx512f, "avx512f"}, {avx512bw, "avx512bw"},
                                  {avx512bf16, "avx512_bf16"}, {amx_tile, "amx_tile"}, {amx_bf16, "amx_bf16"}})
    if (has) found += (found.empty() ? "" : ", ") + std::string(name);
  if (found.empty()) found = "none of avx512f, avx512_bf16, amx_tile, amx_bf16";
  else if (found == "avx512f") found += " only";
  Bf16Support s;
  if (!(avx512f && avx512bw && avx512bf16 && amx_tile && amx_bf16)) {
    s.missing = "bfloat16 products need AMX-BF16 and AVX512-BF16 (found: " + found + ")";
    return s;
  }
  if (!os_amx) {
    s.missing = "bfloat16 products need AMX, which the CPU has but the operating system has not enabled (XCR0)";
    return s;
  }
#if defined(__linux__)
  // Linux >= 5.16 hands out the AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
  constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
  if (syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) != 0) {
    s.missing = "bfloat16 products need AMX, but the Linux kernel refused the AMX tile state "
                "(arch_prctl(ARCH_REQ_XCOMP_PERM) failed; Linux >= 5.16 is needed)";
    return s;
  }
#endif
  s.available = true;
  return s;
}
#endif

/// The CPU/OS check, done once (the Linux permission request with it).
inline const Bf16Support& bf16_support() {
  if (bf16_hide_amx_for_testing()) {
    static const Bf16Support hidden{
        false, "bfloat16 products need AMX-BF16 and AVX512-BF16 (found: avx512f only; hidden by the test hook)"};
    return hidden;
  }
#if MLVAE_BF16_AMX
  static const Bf16Support support = detect_bf16_support();
  return support;
#else
  static const Bf16Support none{false, "bfloat16 products need AMX-BF16, an x86-64 CPU feature (this build is not "
                                       "for x86-64, its compiler is older than GCC 11 / Clang 12, or it defines "
                                       "MLVAE_NO_AMX)"};
  return none;
#endif
}

}  // namespace detail

/// Whether this CPU and OS can run the bfloat16 products (AMX-BF16, AVX512-BF16, AMX state granted).
inline bool bfloat16_available() { return detail::bf16_support().available; }

/// Raises ArgumentError, naming what is missing, unless bfloat16_available().
inline void require_bfloat16() {
  const detail::Bf16Support& s = detail::bf16_support();
  if (!s.available) raise_error<ArgumentError>(s.missing);
}

/// The checks behind every set_precision (Gemm and the models, named by `who`): BFloat16 needs
/// T = float and require_bfloat16(); Float32 is always allowed. Raises ArgumentError otherwise.
template <typename T>
void require_precision(Precision p, const char* who) {
  if (p != Precision::BFloat16) return;
  require<ArgumentError>(std::is_same_v<T, float>, who, ": bfloat16 precision is for float models only (this one is ",
                         sizeof(T) == 8 ? "double" : "not float", ")");
  require_bfloat16();
}

namespace detail {

#if MLVAE_BF16_AMX
/// Rows x 32 k of an operand in bfloat16: one 1 KiB AMX tile of 16 rows x 64 bytes.
inline constexpr Index bf16_tile_elems = 512;

// Interleaves the two 16-element halves of a vector of 32 bf16: out[2i] = v[i], out[2i+1] = v[16+i].
MLVAE_BF16_TARGET inline __m512i bf16_interleave_halves(__m512i v) {
  alignas(64) static const std::uint16_t index[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(index), v);
}

// 32 floats (lo: 16, hi: 16) to 32 bf16 in order (hardware conversion, round to nearest even).
MLVAE_BF16_TARGET inline __m512i bf16_convert32(const float* lo, const float* hi) {
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo));
}

/// Converts n floats to bfloat16 with the vector instruction the kernel packs with (tests compare
/// it to to_bfloat16).
MLVAE_BF16_TARGET inline void bf16_convert_vector(const float* x, std::uint16_t* out, Index n) {
  Index i = 0;
  for (; i + 32 <= n; i += 32) _mm512_storeu_si512(out + i, bf16_convert32(x + i, x + i + 16));
  for (; i < n; ++i) out[i] = to_bfloat16(x[i]);
}

inline void bf16_transpose16(const std::uint32_t* in, std::uint32_t* out) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) out[c * 16 + r] = in[r * 16 + c];
}

// Packs the op(A) tile of rows [i0, i0+16) and k [k0, k0+32) in VNNI layout:
// out[kp·32 + ii·2 + e] = bf16(op(A)(i0+ii, k0+2kp+e)), zero outside m x k.
MLVAE_BF16_TARGET inline void bf16_pack_a_tile(bool ta, Index m, Index k, const float* a, Index lda, Index i0, Index k0,
                                               std::uint16_t* out) {
  if (i0 + 16 <= m && k0 + 32 <= k) {
    if (!ta) {  // A is m x k column-major: columns k0+2kp, k0+2kp+1 hold rows i0..i0+15
      for (Index kp = 0; kp < 16; ++kp) {
        const float* col = a + i0 + (k0 + 2 * kp) * lda;
        _mm512_storeu_si512(out + kp * 32, bf16_interleave_halves(bf16_convert32(col, col + lda)));
      }
    } else {  // A is k x m: row ii of op(A) is contiguous in k, its k pairs are the VNNI dwords
      alignas(64) std::uint32_t rows[256];
      for (Index ii = 0; ii < 16; ++ii) {
        const float* row = a + k0 + (i0 + ii) * lda;
        _mm512_store_si512(rows + ii * 16, bf16_convert32(row, row + 16));
      }
      std::uint32_t tile[256];
      bf16_transpose16(rows, tile);
      std::memcpy(out, tile, sizeof tile);
    }
    return;
  }
  for (Index kp = 0; kp < 16; ++kp)
    for (Index ii = 0; ii < 16; ++ii)
      for (Index e = 0; e < 2; ++e) {
        const Index i = i0 + ii, kk = k0 + 2 * kp + e;
        out[kp * 32 + ii * 2 + e] =
            i < m && kk < k ? to_bfloat16(ta ? a[kk + i * lda] : a[i + kk * lda]) : std::uint16_t(0);
      }
}

// Packs the op(B)ᵀ tile of columns [j0, j0+16) and k [k0, k0+32) row-major:
// out[jj·32 + kk] = bf16(op(B)(k0+kk, j0+jj)), zero outside k x n.
MLVAE_BF16_TARGET inline void bf16_pack_b_tile(bool tb, Index n, Index k, const float* b, Index ldb, Index j0, Index k0,
                                               std::uint16_t* out) {
  if (j0 + 16 <= n && k0 + 32 <= k) {
    if (!tb) {  // B is k x n column-major: column j is contiguous in k
      for (Index jj = 0; jj < 16; ++jj) {
        const float* col = b + k0 + (j0 + jj) * ldb;
        _mm512_storeu_si512(out + jj * 32, bf16_convert32(col, col + 16));
      }
    } else {  // B is n x k: row kk of op(B) is contiguous in j; pairs of k rows give the dwords
      alignas(64) std::uint32_t pairs[256];
      for (Index kp = 0; kp < 16; ++kp) {
        const float* row = b + j0 + (k0 + 2 * kp) * ldb;
        _mm512_store_si512(pairs + kp * 16, bf16_interleave_halves(bf16_convert32(row, row + ldb)));
      }
      std::uint32_t tile[256];
      bf16_transpose16(pairs, tile);
      std::memcpy(out, tile, sizeof tile);
    }
    return;
  }
  for (Index jj = 0; jj < 16; ++jj)
    for (Index kk = 0; kk < 32; ++kk) {
      const Index j = j0 + jj, kx = k0 + kk;
      out[jj * 32 + kk] = j < n && kx < k ? to_bfloat16(tb ? b[j + kx * ldb] : b[kx + j * ldb]) : std::uint16_t(0);
    }
}

/// Where an accumulator tile of Cᵀ (columns [j0, j0+16) of C, rows [i0, i0+16)) is loaded from and
/// stored to: C itself when the tile lies inside it, else a 16x16 scratch holding its valid part.
struct Bf16CTile {
  float* ptr;
  Index stride_bytes;
  bool direct;
};

inline Bf16CTile bf16_c_tile(float* c, Index ldc, Index m, Index n, Index i0, Index j0, float* scratch, bool load) {
  if (i0 + 16 <= m && j0 + 16 <= n)
    return Bf16CTile{c + j0 * ldc + i0, ldc * static_cast<Index>(sizeof(float)), true};
  std::fill(scratch, scratch + 256, 0.0f);
  if (load)
    for (Index jj = 0; jj < 16 && j0 + jj < n; ++jj)
      for (Index ii = 0; ii < 16 && i0 + ii < m; ++ii) scratch[jj * 16 + ii] = c[(j0 + jj) * ldc + i0 + ii];
  return Bf16CTile{scratch, 64, false};
}

inline void bf16_c_tile_writeback(const Bf16CTile& t, float* c, Index ldc, Index m, Index n, Index i0, Index j0) {
  if (t.direct) return;
  for (Index jj = 0; jj < 16 && j0 + jj < n; ++jj)
    for (Index ii = 0; ii < 16 && i0 + ii < m; ++ii) c[(j0 + jj) * ldc + i0 + ii] = t.ptr[jj * 16 + ii];
}

/// The AMX palette-1 tile configuration: tiles 0-3 accumulators (16 x 16 float), 4-5 op(B)ᵀ
/// rows, 6-7 op(A) VNNI pairs; all 16 rows x 64 bytes.
struct alignas(64) Bf16TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

/// Packs the op(A) tiles of 32-row blocks [ib_begin, ib_end) for all of k (tile (block16, kc) at
/// (block16·kc_count + kc)·512).
MLVAE_BF16_TARGET inline void bf16_pack_a(bool ta, Index m, Index k, const float* a, Index lda, Index ib_begin,
                                          Index ib_end, std::uint16_t* packed) {
  const Index kcs = (k + 31) / 32;
  for (Index ib = 2 * ib_begin; ib < 2 * ib_end; ++ib)
    for (Index kc = 0; kc < kcs; ++kc)
      bf16_pack_a_tile(ta, m, k, a, lda, ib * 16, kc * 32, packed + (ib * kcs + kc) * bf16_tile_elems);
}

/// Packs the op(B)ᵀ tiles of 32-column blocks [jb_begin, jb_end) and computes those columns of C
/// from the packed op(A) (all rows).
MLVAE_BF16_TARGET inline void bf16_compute(bool tb, Index m, Index n, Index k, const float* b, Index ldb,
                                           const std::uint16_t* packed_a, std::uint16_t* packed_b, float* c, Index ldc,
                                           bool accumulate, Index jb_begin, Index jb_end) {
  const Index kcs = (k + 31) / 32, ibs = (m + 31) / 32;
  for (Index jb = 2 * jb_begin; jb < 2 * jb_end; ++jb)
    for (Index kc = 0; kc < kcs; ++kc)
      bf16_pack_b_tile(tb, n, k, b, ldb, jb * 16, kc * 32, packed_b + (jb * kcs + kc) * bf16_tile_elems);
  Bf16TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.colsb[t] = 64;
  }
  _tile_loadconfig(&config);
  alignas(64) float scratch[4][256];
  for (Index jb = jb_begin; jb < jb_end; ++jb) {
    const Index j0 = jb * 32;
    const std::uint16_t* b0 = packed_b + (2 * jb) * kcs * bf16_tile_elems;
    const std::uint16_t* b1 = b0 + kcs * bf16_tile_elems;
    for (Index ib = 0; ib < ibs; ++ib) {
      const Index i0 = ib * 32;
      const std::uint16_t* a0 = packed_a + (2 * ib) * kcs * bf16_tile_elems;
      const std::uint16_t* a1 = a0 + kcs * bf16_tile_elems;
      // Tile 0: (j0, i0), 1: (j0, i0+16), 2: (j0+16, i0), 3: (j0+16, i0+16).
      const Bf16CTile t0 = bf16_c_tile(c, ldc, m, n, i0, j0, scratch[0], accumulate);
      const Bf16CTile t1 = bf16_c_tile(c, ldc, m, n, i0 + 16, j0, scratch[1], accumulate);
      const Bf16CTile t2 = bf16_c_tile(c, ldc, m, n, i0, j0 + 16, scratch[2], accumulate);
      const Bf16CTile t3 = bf16_c_tile(c, ldc, m, n, i0 + 16, j0 + 16, scratch[3], accumulate);
      if (accumulate) {
        _tile_loadd(0, t0.ptr, t0.stride_bytes);
        _tile_loadd(1, t1.ptr, t1.stride_bytes);
        _tile_loadd(2, t2.ptr, t2.stride_bytes);
        _tile_loadd(3, t3.ptr, t3.stride_bytes);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (Index kc = 0; kc < kcs; ++kc) {
        _tile_loadd(4, b0 + kc * bf16_tile_elems, 64);
        _tile_loadd(5, b1 + kc * bf16_tile_elems, 64);
        _tile_loadd(6, a0 + kc * bf16_tile_elems, 64);
        _tile_loadd(7, a1 + kc * bf16_tile_elems, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, t0.ptr, t0.stride_bytes);
      _tile_stored(1, t1.ptr, t1.stride_bytes);
      _tile_stored(2, t2.ptr, t2.stride_bytes);
      _tile_stored(3, t3.ptr, t3.stride_bytes);
      bf16_c_tile_writeback(t0, c, ldc, m, n, i0, j0);
      bf16_c_tile_writeback(t1, c, ldc, m, n, i0 + 16, j0);
      bf16_c_tile_writeback(t2, c, ldc, m, n, i0, j0 + 16);
      bf16_c_tile_writeback(t3, c, ldc, m, n, i0 + 16, j0 + 16);
    }
  }
  _tile_release();
}
#endif

}  // namespace detail

/// The bfloat16 product engine of one product site (Gemm<float> holds one): packing buffers kept
/// from call to call, grown only.
class GemmBF16 {
public:
  GemmBF16() = default;
  /// Copies nothing: the copy starts with empty buffers.
  GemmBF16(const GemmBF16&) {}
  /// Keeps this instance's buffers (nothing is copied).
  GemmBF16& operator=(const GemmBF16&) { return *this; }
  /// Moves the buffers.
  GemmBF16(GemmBF16&&) noexcept = default;
  /// Moves the buffers.
  GemmBF16& operator=(GemmBF16&&) noexcept = default;

  /// C (m x n, column-major, leading dimension ldc) = op(A)·op(B), or += when `accumulate`, with
  /// op(A) and op(B) rounded to bfloat16 and float32 sums. op(A) is m x k (A stored m x k with
  /// lda >= m, or k x m with lda >= k when `transpose_a`); likewise op(B) is k x n. Raises
  /// ArgumentError when the CPU cannot run it (see require_bfloat16).
  void run(bool transpose_a, bool transpose_b, Index m, Index n, Index k, const float* a, Index lda, const float* b,
           Index ldb, float* c, Index ldc, bool accumulate) {
    require_bfloat16();
    if (m == 0 || n == 0) return;
    if (k == 0) {
      if (!accumulate)
        for (Index j = 0; j < n; ++j) std::fill(c + j * ldc, c + j * ldc + m, 0.0f);
      return;
    }
#if MLVAE_BF16_AMX
    const Index kcs = (k + 31) / 32, ibs = (m + 31) / 32, jbs = (n + 31) / 32;
    std::uint16_t* packed_a = packed_a_.reserve(2 * ibs * kcs * detail::bf16_tile_elems);
    std::uint16_t* packed_b = packed_b_.reserve(2 * jbs * kcs * detail::bf16_tile_elems);
    const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    int threads = work >= parallel_threshold ? compute_threads() : 1;
    threads = static_cast<int>(std::min<Index>(threads, jbs));
    // op(A) is packed once, on the calling thread: every thread reads all of it, and a barrier
    // inside the parallel region would cost more than the packing saves when the cores are
    // oversubscribed (a waiting thread spins away its time slice).
    detail::bf16_pack_a(transpose_a, m, k, a, lda, 0, ibs, packed_a);
    if (threads <= 1) {
      detail::bf16_compute(transpose_b, m, n, k, b, ldb, packed_a, packed_b, c, ldc, accumulate, 0, jbs);
      return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
      const Index t = omp_get_thread_num(), count = omp_get_num_threads();
      detail::bf16_compute(transpose_b, m, n, k, b, ldb, packed_a, packed_b, c, ldc, accumulate, jbs * t / count,
                           jbs * (t + 1) / count);
    }
#else
    detail::bf16_compute(transpose_b, m, n, k, b, ldb, packed_a, packed_b, c, ldc, accumulate, 0, jbs);
#endif
#else
    (void)transpose_a, (void)transpose_b, (void)a, (void)lda, (void)b, (void)ldb;
#endif
  }

private:
  /// Products below this many multiply-adds run on one thread.
  static constexpr double parallel_threshold = 1 << 20;

  // A 64-byte aligned bf16 buffer that only grows.
  class Buffer {
  public:
    std::uint16_t* reserve(Index elems) {
      const std::size_t n = static_cast<std::size_t>(elems);
      if (n > capacity_) {
        raw_.reset(new std::uint16_t[n + 32]);
        const auto address = reinterpret_cast<std::uintptr_t>(raw_.get());
        data_ = raw_.get() + ((64 - address % 64) % 64) / sizeof(std::uint16_t);
        capacity_ = n;
      }
      return data_;
    }

  private:
    std::unique_ptr<std::uint16_t[]> raw_;
    std::uint16_t* data_ = nullptr;
    std::size_t capacity_ = 0;
  };
  Buffer packed_a_, packed_b_;
};

}  // namespace mlvae
