"""GPTQ peer for bench/gptq.ts: the reference algorithm of Frantar et al. (arXiv:2210.17323) as Python users
run it on a CPU with PyTorch -- the structure of the authors' gptq.py `fasterquant` (float32 Hessian
H = 2/N sum x x^T, dead inputs, percdamp 0.01, Cholesky -> cholesky_inverse -> upper Cholesky, blocks of
128 columns with the per-column loop inside and the lazy batch update W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:],
asymmetric min-max groups fitted when the loop reaches them). Written for this benchmark, not copied.

usage: python3 bench/gptq_torch.py <n> <tokens> <threads> [bits] [group]
prints one JSON line: {"hessian_s", "factor_s", "columns_s", "total_s", "cpu_s", "threads", "torch"} (cpu_s: the
process CPU time of the three phases, all threads)
"""
import json
import sys
import time

import torch


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def find_params(w, maxq):
    # per row of the group: asymmetric min-max including 0
    xmin = torch.minimum(w.min(dim=1).values, torch.zeros(w.shape[0]))
    xmax = torch.maximum(w.max(dim=1).values, torch.zeros(w.shape[0]))
    both0 = (xmin == 0) & (xmax == 0)
    xmin[both0] = -1
    xmax[both0] = 1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def main():
    n, ntok, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    bits = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    group = int(sys.argv[5]) if len(sys.argv) > 5 else 128
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    maxq = 2 ** bits - 1
    x = torch.randn(ntok, n)
    w0 = torch.randn(n, n) * 0.02
    c0 = time.process_time()
    t0 = time.perf_counter()
    H = torch.zeros(n, n)
    seen = 0
    for s in range(0, ntok, 512):
        inp = x[s:s + 512]
        m = inp.shape[0]
        H *= seen / (seen + m)
        seen += m
        inp = (2 / seen) ** 0.5 * inp.t()
        H += inp.matmul(inp.t())
    t1 = time.perf_counter()
    W = w0.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = 0.01 * torch.mean(torch.diag(H))
    H += damp * torch.eye(n)
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)
    t2 = time.perf_counter()
    Q = torch.zeros_like(W)
    blocksize = 128
    scale = zero = None
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % group == 0:
                scale, zero = find_params(W[:, i1 + i:i1 + i + group], maxq)
            q = quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    t3 = time.perf_counter()
    c3 = time.process_time()
    print(json.dumps({"hessian_s": t1 - t0, "factor_s": t2 - t1, "columns_s": t3 - t2, "total_s": t3 - t0, "cpu_s": c3 - c0,
                      "threads": threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
