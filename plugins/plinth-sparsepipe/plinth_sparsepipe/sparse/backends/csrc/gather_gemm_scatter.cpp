// Sparse convolution on CPU as gather -> GEMM -> scatter, tiled by output rows (the `torch` back end's "compiled"
// dataflow; see backends/torch_conv.py and docs/plugins/sparsepipe.md).
//
// Forward, output-stationary: the output rows are cut into tiles of `tile` rows and at::parallel_for hands each
// thread a run of tiles. For one tile the thread initialises the tile (identity offset: one GEMM on the tile's own
// rows, no gather), then for every offset k takes that offset's pairs whose output row lies in the tile (a
// contiguous range: the caller passes each offset's pairs sorted by output row, see `sort_pairs`), gathers their
// input rows into its own buffer, multiplies with one single-threaded BLAS call and adds the product into the
// tile. A tile's rows belong to one thread, so there is no race whatever the map (repeated output rows included),
// and the tile stays in L2 while its 27 offsets add into it; the input rows it gathers are neighbours of the
// tile's sites, which for sorted coordinates lie in a window of rows around it (L2/L3, not DRAM).
// Backward, input-stationary, the same with roles swapped: grad_in tile = sum_k grad_out[out_k] @ W[k]^T over the
// pairs whose input row is in the tile (pairs sorted by input row), and grad_W[k] += feats[in_k]^T @ grad_out[out_k]
// on the same gathered rows, accumulated per thread and summed after the loop.
// ATen and torch's pybind casters only, not <torch/extension.h> (the whole C++ frontend): a fresh build takes
// ~23 s instead of ~42 s here.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

extern "C" {
// Fortran BLAS exported by libtorch_cpu when torch is built with MKL (or OpenBLAS); weak, so a torch without them
// still loads this module and the GEMMs go through at::mm instead.
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
// MKL: BLAS threads for calls made by this thread; 1 inside the parallel loop (absent from non-MKL builds).
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));
}

namespace {

template <typename T>
bool have_blas();
template <>
bool have_blas<float>() { return sgemm_ != nullptr; }
template <>
bool have_blas<double>() { return dgemm_ != nullptr; }

inline void blas(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                 const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                 const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
                 const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
                 const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Row-major C[m, n] = op(A)[m, k] @ op(B)[k, n] + beta * C (A, B, C row-major with leading dims lda, ldb, ldc).
template <typename T>
void gemm(bool ta, bool tb, int m, int n, int k, const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == T(0)) for (int i = 0; i < m; ++i) std::fill(C + int64_t(i) * ldc, C + int64_t(i) * ldc + n, T(0));
    return;
  }
  if (have_blas<T>()) {
    // row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
    const T one = 1;
    blas(tb ? "T" : "N", ta ? "T" : "N", &n, &m, &k, &one, B, &ldb, A, &lda, &beta, C, &ldc);
    return;
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor a = ta ? at::from_blob(const_cast<T*>(A), {k, m}, {lda, 1}, opts).t()
                    : at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opts);
  at::Tensor b = tb ? at::from_blob(const_cast<T*>(B), {n, k}, {ldb, 1}, opts).t()
                    : at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
  } else {
    c.addmm_(a, b, beta, 1);
  }
}

template <typename T>
inline void gather(T* __restrict__ dst, const T* __restrict__ src, const int64_t* __restrict__ idx, int64_t n,
                   int64_t c) {
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(dst + r * c, src + idx[r] * c, c * sizeof(T));
  }
}

template <typename T>
inline void scatter_add(T* __restrict__ dst, const T* __restrict__ src, const int64_t* __restrict__ idx, int64_t n,
                        int64_t c) {
  for (int64_t r = 0; r < n; ++r) {
    T* __restrict__ d = dst + idx[r] * c;
    const T* __restrict__ s = src + r * c;
#pragma GCC ivdep
    for (int64_t j = 0; j < c; ++j) d[j] += s[j];
  }
}

// body(thread, tile_begin_row, tile_end_row) over the tiles of [0, n_rows), a run of tiles per thread.
template <typename F>
void over_tiles(int64_t n_rows, int64_t tile, const F& body) {
  const int64_t n_tiles = (n_rows + tile - 1) / tile;
  at::parallel_for(0, n_tiles, 1, [&](int64_t b, int64_t e) {
    const int t = at::get_thread_num();
    const bool inside = at::in_parallel_region() && MKL_Set_Num_Threads_Local;
    const int previous = inside ? MKL_Set_Num_Threads_Local(1) : 0;
    for (int64_t i = b; i < e; ++i) body(t, i * tile, std::min(n_rows, (i + 1) * tile));
    if (inside) MKL_Set_Num_Threads_Local(previous);
  });
}

struct Map {
  const int64_t* stat;    // per offset, sorted: the row owned by the tile (output row forward, input row backward)
  const int64_t* other;   // the row gathered from, same order
  std::vector<int64_t> starts, sizes;
  int64_t identity;
  // pairs [lo, hi) of offset k whose stationary row lies in [a, b)
  std::pair<int64_t, int64_t> range(int64_t k, int64_t a, int64_t b) const {
    const int64_t* s = stat + starts[k];
    const int64_t* e = s + sizes[k];
    const int64_t* lo = std::lower_bound(s, e, a);
    const int64_t* hi = std::lower_bound(lo, e, b);
    return {starts[k] + (lo - s), starts[k] + (hi - s)};
  }
};

void check(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& stat, const at::Tensor& other,
           const std::vector<int64_t>& starts, const std::vector<int64_t>& sizes) {
  TORCH_CHECK(feats.device().is_cpu() && weight.device().is_cpu(), "compiled sparse conv: CPU tensors only");
  TORCH_CHECK(feats.dim() == 2 && weight.dim() == 3 && feats.size(1) == weight.size(1), "bad shapes");
  TORCH_CHECK(feats.scalar_type() == weight.scalar_type(), "feats and weight dtypes differ");
  TORCH_CHECK(stat.scalar_type() == at::kLong && other.scalar_type() == at::kLong, "int64 indices expected");
  TORCH_CHECK(stat.is_contiguous() && other.is_contiguous() && stat.numel() == other.numel(), "bad indices");
  TORCH_CHECK(static_cast<int64_t>(starts.size()) == weight.size(0) && starts.size() == sizes.size(), "bad sizes");
}

template <typename T>
at::Tensor forward_impl(const at::Tensor& feats, const at::Tensor& weight, const Map& map, int64_t n_out,
                        int64_t tile) {
  const int64_t K = weight.size(0), cin = weight.size(1), cout = weight.size(2);
  at::Tensor out = at::empty({n_out, cout}, feats.options());
  const T* f = feats.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const int threads = at::get_num_threads();
  const int64_t per_thread = tile * (cin + cout);
  std::vector<T> buffers(static_cast<size_t>(threads) * per_thread);
  over_tiles(n_out, tile, [&](int t, int64_t a, int64_t b) {
    T* g = buffers.data() + static_cast<size_t>(t) * per_thread;
    T* p = g + tile * cin;
    if (map.identity >= 0) {
      gemm<T>(false, false, b - a, cout, cin, f + a * cin, cin, w + map.identity * cin * cout, cout, T(0),
              o + a * cout, cout);
    } else {
      std::fill(o + a * cout, o + b * cout, T(0));
    }
    for (int64_t k = 0; k < K; ++k) {
      if (k == map.identity || map.sizes[k] == 0) continue;
      const T* wk = w + k * cin * cout;
      auto [lo, hi] = map.range(k, a, b);
      for (int64_t s = lo; s < hi; s += tile) {  // more than `tile` pairs only where output rows repeat
        const int64_t n = std::min(tile, hi - s);
        gather(g, f, map.other + s, n, cin);
        gemm<T>(false, false, n, cout, cin, g, cin, wk, cout, T(0), p, cout);
        scatter_add(o, p, map.stat + s, n, cout);
      }
    }
  });
  return out;
}

template <typename T>
std::vector<at::Tensor> backward_impl(const at::Tensor& grad_out, const at::Tensor& feats, const at::Tensor& weight,
                                      const Map& map, int64_t tile, bool need_in, bool need_w) {
  const int64_t K = weight.size(0), cin = weight.size(1), cout = weight.size(2);
  const int64_t n_in = feats.size(0);
  at::Tensor grad_in = need_in ? at::empty({n_in, cin}, feats.options()) : at::Tensor();
  at::Tensor grad_w = need_w ? at::zeros_like(weight) : at::Tensor();
  const T* f = feats.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  const T* go = grad_out.data_ptr<T>();
  T* gi = need_in ? grad_in.data_ptr<T>() : nullptr;
  const int threads = at::get_num_threads();
  const int64_t per_thread = tile * (cin + cout);
  std::vector<T> buffers(static_cast<size_t>(threads) * per_thread);
  std::vector<T> partial_w(need_w ? static_cast<size_t>(threads) * K * cin * cout : 0, T(0));
  over_tiles(n_in, tile, [&](int t, int64_t a, int64_t b) {
    T* g_out = buffers.data() + static_cast<size_t>(t) * per_thread;
    T* g_in = g_out + tile * cout;
    T* pw = need_w ? partial_w.data() + static_cast<size_t>(t) * K * cin * cout : nullptr;
    if (map.identity >= 0) {  // n_in == n_out: the identity pairs are row i with row i
      if (need_in) {
        gemm<T>(false, true, b - a, cin, cout, go + a * cout, cout, w + map.identity * cin * cout, cout, T(0),
                gi + a * cin, cin);
      }
      if (need_w) {
        gemm<T>(true, false, cin, cout, b - a, f + a * cin, cin, go + a * cout, cout, T(1),
                pw + map.identity * cin * cout, cout);
      }
    } else if (need_in) {
      std::fill(gi + a * cin, gi + b * cin, T(0));
    }
    for (int64_t k = 0; k < K; ++k) {
      if (k == map.identity || map.sizes[k] == 0) continue;
      const T* wk = w + k * cin * cout;
      auto [lo, hi] = map.range(k, a, b);
      for (int64_t s = lo; s < hi; s += tile) {
        const int64_t n = std::min(tile, hi - s);
        gather(g_out, go, map.other + s, n, cout);
        if (need_in) {
          gemm<T>(false, true, n, cin, cout, g_out, cout, wk, cout, T(0), g_in, cin);
          scatter_add(gi, g_in, map.stat + s, n, cin);
        }
        if (need_w) {
          gather(g_in, f, map.stat + s, n, cin);
          gemm<T>(true, false, cin, cout, n, g_in, cin, g_out, cout, T(1), pw + k * cin * cout, cout);
        }
      }
    }
  });
  if (need_w) {
    T* dst = grad_w.data_ptr<T>();
    const int64_t total = K * cin * cout;
    for (int t = 0; t < threads; ++t) {
      const T* src = partial_w.data() + static_cast<size_t>(t) * total;
      for (int64_t j = 0; j < total; ++j) dst[j] += src[j];
    }
  }
  return {grad_in, grad_w};
}

}  // namespace

// out [n_out, Cout]; out_sorted / in_by_out: each offset's pairs sorted by output row (see sort_pairs).
at::Tensor forward(const at::Tensor& feats_, const at::Tensor& weight_, const at::Tensor& out_sorted,
                   const at::Tensor& in_by_out, std::vector<int64_t> starts, std::vector<int64_t> sizes,
                   int64_t identity, int64_t n_out, int64_t tile) {
  check(feats_, weight_, out_sorted, in_by_out, starts, sizes);
  TORCH_CHECK(tile > 0, "tile must be positive");
  TORCH_CHECK(identity < 0 || feats_.size(0) == n_out, "an identity offset needs n_in == n_out");
  at::Tensor feats = feats_.contiguous(), weight = weight_.contiguous();
  Map map{out_sorted.data_ptr<int64_t>(), in_by_out.data_ptr<int64_t>(), starts, sizes, identity};
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "plinth_sparse_conv_forward", [&] {
    out = forward_impl<scalar_t>(feats, weight, map, n_out, tile);
  });
  return out;
}

// (grad_in or undefined, grad_w or undefined); in_sorted / out_by_in: each offset's pairs sorted by input row.
std::vector<at::Tensor> backward(const at::Tensor& grad_out_, const at::Tensor& feats_, const at::Tensor& weight_,
                                 const at::Tensor& in_sorted, const at::Tensor& out_by_in,
                                 std::vector<int64_t> starts, std::vector<int64_t> sizes, int64_t identity,
                                 int64_t tile, bool need_in, bool need_w) {
  check(feats_, weight_, in_sorted, out_by_in, starts, sizes);
  TORCH_CHECK(tile > 0, "tile must be positive");
  at::Tensor feats = feats_.contiguous(), weight = weight_.contiguous();
  at::Tensor grad_out = grad_out_.contiguous().to(feats.scalar_type());
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(1) == weight.size(2), "bad grad_out shape");
  TORCH_CHECK(identity < 0 || feats.size(0) == grad_out.size(0), "an identity offset needs n_in == n_out");
  Map map{in_sorted.data_ptr<int64_t>(), out_by_in.data_ptr<int64_t>(), starts, sizes, identity};
  std::vector<at::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "plinth_sparse_conv_backward", [&] {
    result = backward_impl<scalar_t>(grad_out, feats, weight, map, tile, need_in, need_w);
  });
  return result;
}

// Each offset's pairs ordered by `key` (stable), checking every index against its bound: (key sorted, other in
// that order), or two empty tensors when every offset is already in order (nothing copied; the common case for a
// map built on sorted coordinates).
std::vector<at::Tensor> sort_pairs(const at::Tensor& key_, const at::Tensor& other_, std::vector<int64_t> starts,
                                   std::vector<int64_t> sizes, int64_t identity, int64_t key_bound,
                                   int64_t other_bound) {
  TORCH_CHECK(key_.scalar_type() == at::kLong && other_.scalar_type() == at::kLong, "int64 indices expected");
  TORCH_CHECK(key_.numel() == other_.numel(), "index lengths differ");
  at::Tensor key = key_.contiguous(), other = other_.contiguous();
  const int64_t* kp = key.data_ptr<int64_t>();
  const int64_t* op = other.data_ptr<int64_t>();
  const int64_t n = key.numel();
  bool sorted = true;
  for (size_t k = 0; k < sizes.size(); ++k) {
    if (static_cast<int64_t>(k) == identity || sizes[k] == 0) continue;
    TORCH_CHECK(starts[k] >= 0 && sizes[k] >= 0 && starts[k] + sizes[k] <= n, "offset slice out of range");
    for (int64_t i = starts[k], e = starts[k] + sizes[k]; i < e; ++i) {
      TORCH_CHECK(kp[i] >= 0 && kp[i] < key_bound && op[i] >= 0 && op[i] < other_bound, "row index out of range");
      if (i > starts[k] && kp[i] < kp[i - 1]) sorted = false;
    }
  }
  if (sorted) return {at::Tensor(), at::Tensor()};
  at::Tensor key_out = key.clone(), other_out = other.clone();
  int64_t* ko = key_out.data_ptr<int64_t>();
  int64_t* oo = other_out.data_ptr<int64_t>();
  at::parallel_for(0, static_cast<int64_t>(sizes.size()), 1, [&](int64_t b, int64_t e) {
    std::vector<int64_t> order;
    for (int64_t k = b; k < e; ++k) {
      if (k == identity || sizes[k] < 2) continue;
      const int64_t s = starts[k], m = sizes[k];
      order.resize(m);
      for (int64_t i = 0; i < m; ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return kp[s + x] < kp[s + y]; });
      for (int64_t i = 0; i < m; ++i) {
        ko[s + i] = kp[s + order[i]];
        oo[s + i] = op[s + order[i]];
      }
    }
  });
  return {key_out, other_out};
}

bool uses_blas() { return have_blas<float>() && have_blas<double>(); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "tiled gather-GEMM-scatter forward");
  m.def("backward", &backward, "tiled gather-GEMM-scatter backward: (grad_in, grad_w)");
  m.def("sort_pairs", &sort_pairs, "each offset's pairs sorted by one side (bounds-checked)");
  m.def("uses_blas", &uses_blas, "GEMMs call BLAS sgemm_/dgemm_ directly (else at::mm)");
}
