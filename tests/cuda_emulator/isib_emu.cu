// isib_emu MODE DTYPE S N L TAU SMS IN OUT
//   MODE fwd: IN x; OUT D [S*S] then loss.  bwd_pair: IN x, grad_D [S*S]; OUT grad_x.
//   bwd_isib: IN x, grad_loss, D [S*S]; OUT grad_x. All float64.
#include "host_ctx.h"
#include "isib_kernel.cu"

using namespace ddtime::kernels;

template <typename T>
int run(char** argv) {
  using R = opmath_t<T>;
  const std::string mode = argv[1];
  const int64_t S = std::atoll(argv[3]), N = std::atoll(argv[4]), L = std::atoll(argv[5]);
  const double tau = std::atof(argv[6]);
  const int sms = std::atoi(argv[7]);
  const std::vector<double> in = read_doubles(argv[8]);
  const int64_t n = S * N * L;
  std::vector<T> x(n);
  for (int64_t e = 0; e < n; ++e) x[e] = detail::from_op<T>(static_cast<R>(in[e]));
  IsibParams<T> p = base_params(x.data(), S, N, L, tau);
  std::vector<double> result;
  if (mode == "fwd") {
    const ForwardLayout f = forward_layout(S, N, L, depth<R>(), sms);
    std::vector<R> ws(f.total), D(S * S), loss(1);
    p.tiles = f.tiles;
    p.splits = f.splits;
    p.chunks_per_split = f.chunks_per_split;
    p.lse = ws.data() + f.lse;
    p.partial = ws.data() + f.partial;
    p.tile_loss = ws.data() + f.tile_loss;
    p.D = D.data();
    p.loss = loss.data();
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_stats_block(c, p); });
    run_grid(f.tiles * f.tiles * f.splits, kThreads, pair_smem<R>(), [&](const HostCtx& c, unsigned char* s) { pair_tiles_block(c, p, s); });
    run_grid(f.t32 * f.t32, kThreads, finalize_smem<R>(), [&](const HostCtx& c, unsigned char* s) { finalize_block(c, p, s); });
    run_grid(1, kThreads, (kThreads / 32) * sizeof(R), [&](const HostCtx& c, unsigned char* s) { isib_total_block(c, p, s); });
    for (auto v : D) result.push_back(v);
    result.push_back(loss[0]);
  } else {
    const bool isib = mode == "bwd_isib";
    std::vector<R> ws(pairwise_kl_backward_workspace(S, N, L)), grad_D(S * S), D(S * S), grad_loss(1);
    std::vector<T> grad_x(n);
    if (isib) {
      grad_loss[0] = static_cast<R>(in[n]);
      for (int64_t e = 0; e < S * S; ++e) D[e] = static_cast<R>(in[n + 1 + e]);
      p.grad_loss = grad_loss.data();
      p.D_in = D.data();
    } else {
      for (int64_t e = 0; e < S * S; ++e) grad_D[e] = static_cast<R>(in[n + e]);
      p.grad_D = grad_D.data();
    }
    p.grad_x = grad_x.data();
    p.lse = ws.data();
    p.Gs = p.lse + S * N;
    p.a = p.Gs + S * S;
    p.q = p.a + S;
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_stats_block(c, p); });
    run_grid(warp_rows_grid(S), kThreads, 0, [&](const HostCtx& c, unsigned char*) {
      if (isib) {
        prepare_block<true>(c, p);
      } else {
        prepare_block<false>(c, p);
      }
    });
    run_grid(ceil_div(S, kTile) * ceil_div(p.K, kTile), kThreads, gemm_smem<R>(),
             [&](const HostCtx& c, unsigned char* s) { gemm_tiles_block(c, p, s); });
    run_grid(warp_rows_grid(S * N), kThreads, 0, [&](const HostCtx& c, unsigned char*) { row_backward_block(c, p); });
    for (auto v : grad_x) result.push_back(detail::to_op(v));
  }
  write_doubles(argv[9], result);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 10) return 2;
  const std::string dt = argv[2];
  if (dt == "f32") return run<float>(argv);
  if (dt == "f64") return run<double>(argv);
  if (dt == "f16") return run<__half>(argv);
  return run<__nv_bfloat16>(argv);
}
