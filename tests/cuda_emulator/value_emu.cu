// value_emu MODE DTYPE OUTER H INNER TIME_CONTIG ALPHA TILE THREADS GRID IN OUT
//   MODE value | value_nograd | bins | bins_bwd; DTYPE f16 | bf16 | f32 | f64.
//   IN (float64, logical [outer, H, inner] order): input then target, or for bins_bwd grad_modulus
//   [outer, F, inner] then phase [outer, F, inner, 2]. TIME_CONTIG=1 stores input and target
//   physically as [outer, inner, H]. OUT (float64): rows then grad | modulus then phase | grad.
#include "host_ctx.h"
#include "value_loss_kernel.cu"

using namespace ddtime::kernels;

template <typename T>
int run(char** argv) {
  using R = opmath_t<T>;
  const std::string mode = argv[1];
  const int64_t outer = std::atoll(argv[3]), H = std::atoll(argv[4]), inner = std::atoll(argv[5]);
  const bool time_contig = std::atoi(argv[6]) != 0;
  const double alpha = std::atof(argv[7]);
  Config cfg;
  cfg.tile = std::atoi(argv[8]);
  cfg.threads = std::atoi(argv[9]);
  const std::vector<double> in = read_doubles(argv[11]);
  const int64_t F = H / 2 + 1, n = outer * H * inner, nf = outer * F * inner;
  SeriesParams<T> p = make_params<T>(SeriesShape{outer, H, inner}, cfg, nullptr);
  const int64_t grid = std::min<int64_t>(p.num_tiles, std::atoll(argv[10]));
  const size_t smem = table_bytes<R>(H) + series_bytes<R>(p.M) * cfg.tile;
  std::vector<T> a, b, out;
  std::vector<R> rows, phase;
  std::vector<double> result;
  if (mode == "bins_bwd") {
    for (int64_t e = 0; e < nf; ++e) a.push_back(detail::from_op<T>(static_cast<R>(in[e])));
    for (int64_t e = 0; e < 2 * nf; ++e) phase.push_back(static_cast<R>(in[nf + e]));
    out.resize(n);
    p.a = a.data();
    p.sa = Strides3{F * inner, inner, 1};
    p.phase_in = phase.data();
    p.out = out.data();
    run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kBinsBackward>(c, p, s); });
    for (auto v : out) result.push_back(detail::to_op(v));
  } else {
    a.resize(n);
    b.resize(n);
    const Strides3 st = time_contig ? Strides3{H * inner, 1, H} : Strides3{H * inner, inner, 1};
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t t = 0; t < H; ++t)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t logical = (o * H + t) * inner + i, phys = o * st.outer + t * st.length + i * st.inner;
          a[phys] = detail::from_op<T>(static_cast<R>(in[logical]));
          b[phys] = detail::from_op<T>(static_cast<R>(in[n + logical]));
        }
    p.a = a.data();
    p.b = b.data();
    p.sa = p.sb = st;
    p.load_time_major = st.length != 1;
    if (mode == "bins") {
      out.resize(nf);
      phase.resize(2 * nf);
      p.out = out.data();
      p.phase_out = phase.data();
      run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kBins>(c, p, s); });
      for (auto v : out) result.push_back(detail::to_op(v));
      for (auto v : phase) result.push_back(v);
    } else {
      rows.resize(outer * inner);
      p.rows = rows.data();
      p.alpha_over_F = static_cast<R>(alpha / p.F);
      p.mse_scale = static_cast<R>((1.0 - alpha) / p.H);
      p.grad_mse_scale = static_cast<R>(2.0 * (1.0 - alpha) / p.H);
      if (mode == "value") {
        out.resize(n);
        p.out = out.data();
      }
      run_grid(grid, cfg.threads, smem, [&](const HostCtx& c, unsigned char* s) { series_block<Mode::kValueLoss>(c, p, s); });
      for (auto v : rows) result.push_back(v);
      for (auto v : out) result.push_back(detail::to_op(v));
    }
  }
  write_doubles(argv[12], result);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 13) return 2;
  const std::string dt = argv[2];
  if (dt == "f32") return run<float>(argv);
  if (dt == "f64") return run<double>(argv);
  if (dt == "f16") return run<__half>(argv);
  return run<__nv_bfloat16>(argv);
}
