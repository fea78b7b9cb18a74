// Launchers of the pairwise symmetric KL / ISIB CUDA kernels (plain CUDA C++, no torch headers).
//
// x: contiguous [S, N, L]; p = softmax(x / tau) over L for every (sample, channel) row, l = log p.
// Nothing of size S*N*L is materialised in the forward: a statistics pass stores one log-sum-exp
// per row, then a tiled kernel recomputes p and l of each tile from x and accumulates, for the
// upper triangle of sample-tile pairs, D_ij * N = sum_k (p_ik - p_jk)(l_ik - l_jk) over the flat
// N*L axis (the same value as h_i + h_j - C_ij - C_ji with C = P @ logP^T, without its
// cancellation). Long N*L axes are split over a fixed number of blocks whose partial sums a second
// pass adds in a fixed order. The backward forms Gs = grad_D + grad_D^T once, computes
// Gs @ logP and Gs @ P tile by tile (again recomputing p, l from x), applies the softmax backward
// per row, and needs O(S*N*L + S^2) workspace. No atomics anywhere: results are bitwise
// independent of block scheduling.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernel_types.h"  // opmath_t

namespace ddtime::kernels {

// Elements of opmath_t<T> (of size opmath_size) needed as workspace by launch_pairwise_kl_forward
// for this shape on the current device.
cudaError_t pairwise_kl_forward_workspace(int64_t S, int64_t N, int64_t L, int opmath_size, int64_t* elements);

// Elements of opmath_t<T> needed by launch_pairwise_kl_backward / launch_isib_backward.
int64_t pairwise_kl_backward_workspace(int64_t S, int64_t N, int64_t L);

// D: contiguous [S, S], symmetric with an exactly zero diagonal. loss (nullable): the ISIB loss
// mean_{i<j} exp(-D_ij) as one value (0 when S == 1).
template <typename T>
cudaError_t launch_pairwise_kl_forward(const T* x, int64_t S, int64_t N, int64_t L, double tau, opmath_t<T>* D,
                                       opmath_t<T>* loss, opmath_t<T>* workspace, cudaStream_t stream);

// grad_x (contiguous [S, N, L]) of sum_ij grad_D[i, j] * D[i, j]; grad_D: contiguous [S, S].
template <typename T>
cudaError_t launch_pairwise_kl_backward(const opmath_t<T>* grad_D, const T* x, int64_t S, int64_t N, int64_t L,
                                        double tau, T* grad_x, opmath_t<T>* workspace, cudaStream_t stream);

// grad_x of grad_loss * mean_{i<j} exp(-D_ij); grad_loss: one value in device memory, D: the
// contiguous [S, S] forward result.
template <typename T>
cudaError_t launch_isib_backward(const opmath_t<T>* grad_loss, const opmath_t<T>* D, const T* x, int64_t S,
                                 int64_t N, int64_t L, double tau, T* grad_x, opmath_t<T>* workspace,
                                 cudaStream_t stream);

}  // namespace ddtime::kernels
