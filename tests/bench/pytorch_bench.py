#!/usr/bin/env python3
"""pytorch_bench.py - what PyTorch eager reaches on the CPU on the workloads of `vl2 bench`.

This is the comparison column of engine/BENCHMARKS.md: the same model shapes and the same
workloads as the engine's `vl2 bench`, run the way people run a DeepSeek-VL2 checkpoint with
PyTorch on a CPU (eager mode, `model.to(dtype)`, `torch.inference_mode()`), so that the
engine's figures can be read against a familiar baseline.

    python3 tests/bench/pytorch_bench.py --config /path/to/deepseek-vl2-tiny/config.json
    python3 tests/bench/pytorch_bench.py --config DIR/config.json --threads 2 --dtype both \\
        --repeats 5 --prompt-tokens 1500 --gen-tokens 32 [--json]

Only the checkpoint's config.json is read: the weights are random (values do not change how
fast dense float arithmetic runs), the shapes are the real ones. Missing language_config keys
take DeepseekV2Config's defaults, missing vision/projector keys those of the engine's config
reader (engine/config.c), so both sides build the same model. Workloads, each the median of
--repeats runs after one warm-up:

  vision   one 384x384 tile through the SigLIP ViT (stride-14 patch conv -> 729 tokens, + pos
           embed, pre-LN blocks with qkv bias, 16-head softmax attention, GELU(tanh) MLP, final
           LayerNorm) and the projector (2x2 unfold -> Linear -> GELU -> Linear), as timm and
           deepseek_vl2 build them. Seconds per tile and GFLOP/s, the FLOPs counted as the
           engine counts them (vision_tile_flops in engine/model.c): 2 x weight elements x
           tokens for every matrix, plus 4 x 729^2 x width x layers for attention.
  prefill  --prompt-tokens random token ids through the DeepSeek-V2 decoder in one forward
           pass (embedding, RMSNorm, MHA or MLA in its plain non-absorbed form as in HF's
           modeling_deepseek.py, rotary embeddings, the MoE with its router, top-k and
           experts run over the tokens routed to each (HF's moe_infer), shared experts, dense
           MLP for the first layers, final norm, lm_head for the last token). Tokens/s, and
           GFLOP/s counted as the engine counts them (for MLA the engine's count is that of
           its absorbed form, so compare the tokens/s).
  decode   --gen-tokens greedy tokens one at a time with a preallocated KV cache, after a
           16-token prompt and after the long prompt. Tokens/s at both contexts.

Each workload runs in float32 and in bfloat16 (weights and activations in bf16; like HF's
code, softmax, RMSNorm and the router compute in float32 inside). Only one dtype's model
exists at a time. The header gives the torch version, the thread count, the CPU and its
bf16 support; torch.set_num_threads(--threads) sets the intra-op threads and
OPENBLAS_NUM_THREADS/OMP_NUM_THREADS are set to match before torch loads (float32 matrix
products go to the BLAS torch was built with, bfloat16 ones to oneDNN).

--layers N overrides the number of LM and ViT layers, for smoke tests: the figures are then
NOT comparable with anything (the engine's bench always runs the whole model). With fewer
layers than the model has, at least the last layer stays an MoE layer.

Allocator: the figures are PyTorch's with the process's malloc as it is. With glibc's defaults
the large temporaries (attention scores: 16 x 729^2 floats in the ViT, heads x n^2 in a
prefill; 34 MB and more) go back to the system when freed and are page-faulted in again on the
next call: on the 2-core guest of engine/BENCHMARKS.md, a float32 softmax over 16 x 729^2 scores
took ~115 ms that way and ~9 ms with MALLOC_TOP_PAD_=1073741824 in the environment. That
variable, or an LD_PRELOAD of jemalloc/tcmalloc, is the usual CPU tuning; the header and the
JSON ("allocator") record which such variables were set, so a table can say which it quotes.

Run it on an otherwise idle machine. When another process holds the CPUs, every
multi-threaded op waits for a time slice (~8 ms per op was seen on 2 cores), which wrecks the
small ops of decoding; the script times a parallel op on 1 and on --threads threads first and
warns (and flags the JSON: "busy_warning") when the machine looks busy.

The script re-runs itself with /usr/bin/python3 when the interpreter it was started with
cannot import torch (a pyenv or venv python does not see Debian's python3-torch).

A language model that does not fit in the available memory at a dtype (DeepSeek-VL2 Small and
Base in bf16 need 32 GB and 54 GB) is skipped, with a note; the vision figures still run.

Needs PyTorch (Debian 12: `apt install python3-torch`, torch 1.13) and the standard library.
Exit status 77 (meson's "skipped") when torch cannot be imported.
"""

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

# Debian's python3-torch lives in /usr/lib/python3/dist-packages, which a pyenv or venv
# interpreter does not see; try the system interpreter before giving up.
SYSTEM_PYTHON = "/usr/bin/python3"
REEXEC_GUARD = "SIGHTLINE_PYTORCH_BENCH_REEXEC"


def import_torch(threads):
    """Imports torch with the BLAS and OpenMP pools sized to `threads`; exits 77 without it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        pass
    if (os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) !=
            os.path.realpath(SYSTEM_PYTHON) and not os.environ.get(REEXEC_GUARD)):
        print(f"pytorch_bench: torch is not importable from {sys.executable}; trying "
              f"{SYSTEM_PYTHON}", file=sys.stderr)
        os.environ[REEXEC_GUARD] = "1"
        sys.stdout.flush()
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    print("pytorch_bench: PyTorch is not installed. On Debian/Ubuntu: sudo apt install "
          "python3-torch (then run this script with /usr/bin/python3)", file=sys.stderr)
    sys.exit(77)


# ------------------------------------------------------------------------------------------
# Configuration: config.json with the defaults the engine and the reference use


def read_config(path, layers_override):
    """Returns (vision, projector, lm) dicts of resolved shapes for config.json at `path`."""
    with open(path) as f:
        cfg = json.load(f)
    vc, pc, lc = (cfg.get(k) or {} for k in ("vision_config", "projector_config",
                                               "language_config"))

    def get(d, key, default):
        v = d.get(key)
        return default if v is None else v

    # vision_config (engine/config.c parse_vision; SigLIP-SO400M in DeepSeek-VL2)
    width = get(vc, "width", 1024)
    vision = {
        "image_size": get(vc, "image_size", 384),
        "patch_size": get(vc, "patch_size", 16),
        "width": width,
        "layers": get(vc, "layers", 24),
        "heads": get(vc, "heads", 16),
        # timm's Block: hidden_features = int(dim * mlp_ratio)
        "mlp_hidden": int(width * float(get(vc, "mlp_ratio", 4.0))),
    }
    vision["grid"] = vision["image_size"] // vision["patch_size"]

    # projector_config (MlpProjectorConfig, downsample_mlp_gelu)
    projector = {
        "input_dim": get(pc, "input_dim", 1152),
        "n_embed": get(pc, "n_embed", 2048),
        "depth": get(pc, "depth", 2),
        "mlp_ratio": get(pc, "mlp_ratio", 1),
        "downsample_ratio": get(pc, "downsample_ratio", 2),
    }

    # language_config (DeepseekV2Config defaults; a null q_lora_rank means a plain q_proj,
    # a null num_key_value_heads means num_attention_heads)
    heads = get(lc, "num_attention_heads", 32)
    lm = {
        "vocab_size": get(lc, "vocab_size", 102400),
        "hidden_size": get(lc, "hidden_size", 4096),
        "intermediate_size": get(lc, "intermediate_size", 11008),
        "moe_intermediate_size": get(lc, "moe_intermediate_size", 1407),
        "num_hidden_layers": get(lc, "num_hidden_layers", 30),
        "num_attention_heads": heads,
        "num_key_value_heads": get(lc, "num_key_value_heads", heads),
        "n_shared_experts": get(lc, "n_shared_experts", 0),
        "n_routed_experts": get(lc, "n_routed_experts", 0),
        "num_experts_per_tok": get(lc, "num_experts_per_tok", 0),
        "moe_layer_freq": get(lc, "moe_layer_freq", 1),
        "first_k_dense_replace": get(lc, "first_k_dense_replace", 0),
        "n_group": get(lc, "n_group", 1),
        "topk_group": get(lc, "topk_group", 1),
        "topk_method": get(lc, "topk_method", "greedy"),
        "scoring_func": get(lc, "scoring_func", "softmax"),
        "norm_topk_prob": get(lc, "norm_topk_prob", False),
        "routed_scaling_factor": get(lc, "routed_scaling_factor", 1.0),
        "use_mla": get(lc, "use_mla", True),
        "kv_lora_rank": get(lc, "kv_lora_rank", 512),
        "q_lora_rank": lc.get("q_lora_rank", 1536) or 0,
        "qk_nope_head_dim": get(lc, "qk_nope_head_dim", 128),
        "qk_rope_head_dim": get(lc, "qk_rope_head_dim", 64),
        "v_head_dim": get(lc, "v_head_dim", 128),
        "rms_norm_eps": get(lc, "rms_norm_eps", 1e-6),
        "rope_theta": get(lc, "rope_theta", 10000.0),
        "attention_bias": get(lc, "attention_bias", False),
        "tie_word_embeddings": get(lc, "tie_word_embeddings", False),
    }
    if not lm["use_mla"]:
        lm["head_dim"] = lm["hidden_size"] // heads
    lm["variant"] = ("tiny" if not lm["use_mla"] else
                     "base" if lm["scoring_func"] == "sigmoid" else "small")

    n = lm["num_hidden_layers"]
    lm["is_moe"] = [lm["n_routed_experts"] > 0 and i >= lm["first_k_dense_replace"] and
                    i % lm["moe_layer_freq"] == 0 for i in range(n)]
    if layers_override:
        # Keep the model's first dense layers where they fit, but the last layer an MoE one,
        # so that a one-layer smoke test still runs the experts.
        n_dense = min(lm["first_k_dense_replace"], layers_override - 1)
        lm["num_hidden_layers"] = layers_override
        lm["is_moe"] = [lm["n_routed_experts"] > 0 and i >= n_dense
                        for i in range(layers_override)]
        vision["layers"] = layers_override
    return vision, projector, lm


def lm_shapes(lm):
    """The matrices of the language model, as (name, layer or None, shape, per_token_count).

    per_token_count is how many times one token multiplies by the matrix (0 for the
    embedding, k/n_routed for a routed expert, 1 otherwise): it gives both the parameter
    count and the FLOPs per token without building anything."""
    H, D = lm["num_attention_heads"], lm["hidden_size"]
    out = [("embed", None, (lm["vocab_size"], D), 0)]
    for i in range(lm["num_hidden_layers"]):
        if lm["use_mla"]:
            qd = lm["qk_nope_head_dim"] + lm["qk_rope_head_dim"]
            if lm["q_lora_rank"]:
                out += [("q_a", i, (lm["q_lora_rank"], D), 1),
                        ("q_b", i, (H * qd, lm["q_lora_rank"]), 1)]
            else:
                out += [("wq", i, (H * qd, D), 1)]
            out += [("kv_a", i, (lm["kv_lora_rank"] + lm["qk_rope_head_dim"], D), 1),
                    ("kv_b", i, (H * (lm["qk_nope_head_dim"] + lm["v_head_dim"]),
                                 lm["kv_lora_rank"]), 1),
                    ("wo", i, (D, H * lm["v_head_dim"]), 1)]
        else:
            hd, kvh = lm["head_dim"], lm["num_key_value_heads"]
            out += [("wq", i, (H * hd, D), 1), ("wk", i, (kvh * hd, D), 1),
                    ("wv", i, (kvh * hd, D), 1), ("wo", i, (D, H * hd), 1)]
        if lm["is_moe"][i]:
            E, k, F = lm["n_routed_experts"], lm["num_experts_per_tok"], \
                lm["moe_intermediate_size"]
            out += [("router", i, (E, D), 1)]
            out += [(f"e{e}.{m}", i, s, k / E) for e in range(E)
                    for m, s in (("gate", (F, D)), ("up", (F, D)), ("down", (D, F)))]
            if lm["n_shared_experts"]:
                S = F * lm["n_shared_experts"]
                out += [("shared.gate", i, (S, D), 1), ("shared.up", i, (S, D), 1),
                        ("shared.down", i, (D, S), 1)]
        else:
            F = lm["intermediate_size"]
            out += [("dense.gate", i, (F, D), 1), ("dense.up", i, (F, D), 1),
                    ("dense.down", i, (D, F), 1)]
    if not lm["tie_word_embeddings"]:
        out += [("lm_head", None, (lm["vocab_size"], D), 0)]
    return out


def lm_counts(lm):
    """(parameters, FLOPs per token in the layers, FLOPs of the lm_head, FLOPs per attended
    (query, key) pair) - the last three as the engine counts them (vl2_model_get_info)."""
    params = per_token = 0.0
    for _, _, shape, times in lm_shapes(lm):
        params += math.prod(shape)
        per_token += 2 * math.prod(shape) * times
    head = 2.0 * lm["vocab_size"] * lm["hidden_size"]
    L, H = lm["num_hidden_layers"], lm["num_attention_heads"]
    if lm["use_mla"]:
        pair = L * H * (2.0 * (lm["kv_lora_rank"] + lm["qk_rope_head_dim"]) +
                        2.0 * lm["kv_lora_rank"])
    else:
        pair = 4.0 * L * H * lm["head_dim"]
    return params, per_token, head, pair


# ------------------------------------------------------------------------------------------
# Machine


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    for key in ("model name", "Model", "Hardware", "CPU part"):
        for line in info.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_features(flags):
    """The same summary the engine's bench prints."""
    if "avx512_bf16" in flags:
        return "avx512 bf16 vnni"
    if "avx512_vnni" in flags:
        return "avx512 vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return platform.machine()


def mem_available():
    """Bytes of MemAvailable in /proc/meminfo, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def allocator_env():
    """The environment variables that change how malloc serves PyTorch, as 'K=V ...'."""
    keys = sorted(k for k in os.environ if k.startswith("MALLOC_") or k == "LD_PRELOAD" or
                  k.startswith("GLIBC_TUNABLES"))
    return " ".join(f"{k}={os.environ[k]}" for k in keys) or "glibc malloc, defaults"


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def release_memory():
    """Frees what Python holds and hands glibc's free heap back to the system."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss():
    """Resets VmHWM (Linux >= 4.0) so each dtype's peak can be read on its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------
# The benchmark proper (needs torch; built inside main() once torch is imported)


def run(args, torch):
    F = torch.nn.functional
    has_sdpa = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0

    class Weights:
        """Random N(0, 0.02) weights. randn is single-threaded (~40 M values/s), far too slow
        for billions of parameters, so one 16 M-value pool is drawn and every tensor is a copy
        of it from a random offset (wrapping around). The values do not change how fast the
        arithmetic runs; the router gets its own fresh values so routing is varied."""

        POOL = 1 << 24

        def __init__(self, dtype, seed):
            self.dtype = dtype
            self.gen = torch.Generator().manual_seed(seed)
            self.pool = (torch.randn(self.POOL, generator=self.gen) * 0.02).to(dtype)

        def __call__(self, *shape, fresh=False):
            n = math.prod(shape)
            if fresh:
                return (torch.randn(n, generator=self.gen) * 0.02).to(self.dtype).view(shape)
            out = torch.empty(n, dtype=self.dtype)
            off = int(torch.randint(self.POOL, (1,), generator=self.gen))
            done = 0
            while done < n:
                m = min(n - done, self.POOL - off)
                out[done:done + m].copy_(self.pool[off:off + m])
                done, off = done + m, 0
            return out.view(shape)

        def ones(self, n):
            return torch.ones(n, dtype=self.dtype)

        def zeros(self, n):
            return torch.zeros(n, dtype=self.dtype)

    def median(xs):
        return statistics.median(xs)

    def busy_check():
        """Times a parallel region on 1 and on --threads threads. On a machine where another
        process holds the CPUs, every multi-threaded op waits for a time slice (~8 ms seen on
        a 2-core machine), which ruins small ops like those of decoding: worth a warning."""
        a = torch.randn(1 << 20)

        def per_op(n_threads):
            torch.set_num_threads(n_threads)
            a.add(a)
            ts = []
            for _ in range(20):
                t0 = time.perf_counter()
                a.add(a)
                ts.append(time.perf_counter() - t0)
            return median(ts)

        one = per_op(1)
        many = per_op(args.threads)
        return one, many

    # ---- attention, shared by the ViT and the LM

    def attention(q, k, v, causal):
        """q [H, Tq, d], k [H, Tk, d], v [H, Tk, dv] -> [H, Tq, dv], scaled by 1/sqrt(d) (the
        scale of the ViT, of MHA and of MLA without YaRN alike). A causal call is either a
        prefill from position 0 (Tq == Tk) or one decoded token (Tq == 1, sees every key)."""
        causal = causal and q.shape[-2] > 1
        if has_sdpa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        # torch < 2.0: eager as in HF's DeepseekV2Attention and timm's non-fused Attention:
        # scores, mask, softmax in float32, back to the activation dtype, times V.
        Tq, Tk = q.shape[-2], k.shape[-2]
        s = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if causal:
            mask = torch.ones(Tq, Tk, dtype=torch.bool).triu_(Tk - Tq + 1)
            s.masked_fill_(mask, float("-inf"))
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(p, v)

    # ---- vision: SigLIP ViT + projector

    class Vision:
        def __init__(self, vc, pc, W):
            C, hid = vc["width"], vc["mlp_hidden"]
            P, g = vc["patch_size"], vc["grid"]
            self.vc, self.pc = vc, pc
            self.patch_w, self.patch_b = W(C, 3, P, P), W.zeros(C)
            self.pos = W(1, g * g, C)
            self.blocks = [dict(n1w=W.ones(C), n1b=W.zeros(C),
                                qkv_w=W(3 * C, C), qkv_b=W.zeros(3 * C),
                                proj_w=W(C, C), proj_b=W.zeros(C),
                                n2w=W.ones(C), n2b=W.zeros(C),
                                fc1_w=W(hid, C), fc1_b=W.zeros(hid),
                                fc2_w=W(C, hid), fc2_b=W.zeros(C))
                           for _ in range(vc["layers"])]
            self.norm_w, self.norm_b = W.ones(C), W.zeros(C)
            # projector: Linear(C r^2, D m), then (depth - 1) x [GELU, Linear(D m, D m or D)]
            r, D, m = pc["downsample_ratio"], pc["n_embed"], pc["mlp_ratio"]
            dims = [C * r * r] + [D * m] * (pc["depth"] - 1) + [D]
            self.proj = [(W(o, i), W.zeros(o)) for i, o in zip(dims[:-1], dims[1:])]
            self.side = (g + r - 1) // r
            S = vc["image_size"]
            self.image = torch.randn(1, 3, S, S, generator=W.gen).to(W.dtype)  # a normalised image

        def flops(self):
            """As the engine's vision_tile_flops: weights only, no biases."""
            vc, n = self.vc, self.vc["grid"] ** 2
            vit = self.patch_w.numel() + sum(b[k].numel() for b in self.blocks
                                             for k in ("qkv_w", "proj_w", "fc1_w", "fc2_w"))
            proj = sum(w.numel() for w, _ in self.proj)
            return (2.0 * vit * n + 4.0 * n * n * vc["width"] * vc["layers"] +
                    2.0 * proj * self.side ** 2)

        def forward(self):
            vc = self.vc
            C, H = vc["width"], vc["heads"]
            hd = C // H
            x = F.conv2d(self.image, self.patch_w, self.patch_b, stride=vc["patch_size"])
            x = x.flatten(2).transpose(1, 2) + self.pos                  # [1, 729, C]
            N = x.shape[1]
            for b in self.blocks:
                h = F.layer_norm(x, (C,), b["n1w"], b["n1b"], 1e-6)
                qkv = F.linear(h, b["qkv_w"], b["qkv_b"]).view(N, 3, H, hd).permute(1, 2, 0, 3)
                q, k, v = qkv.unbind(0)                                    # [H, N, hd]
                a = attention(q, k, v, causal=False)
                a = a.transpose(0, 1).reshape(1, N, C)
                x = x + F.linear(a, b["proj_w"], b["proj_b"])
                h = F.layer_norm(x, (C,), b["n2w"], b["n2b"], 1e-6)
                h = F.gelu(F.linear(h, b["fc1_w"], b["fc1_b"]), approximate="tanh")
                x = x + F.linear(h, b["fc2_w"], b["fc2_b"])
            x = F.layer_norm(x, (C,), self.norm_w, self.norm_b, 1e-6)
            # projector: [1, C, g, g] padded to a multiple of r, r x r patches unfolded
            g, r = vc["grid"], self.pc["downsample_ratio"]
            x = x.transpose(1, 2).reshape(1, C, g, g)
            pad = self.side * r - g
            if pad:
                x = F.pad(x, (0, pad, 0, pad))
            x = F.unfold(x, kernel_size=r, stride=r).transpose(1, 2)   # [1, side^2, C r^2]
            for i, (w, bias) in enumerate(self.proj):
                if i:
                    x = F.gelu(x)
                x = F.linear(x, w, bias)
            return x

    def bench_vision(vc, pc, dtype, repeats):
        W = Weights(dtype, seed=1)
        model = Vision(vc, pc, W)
        del W
        model.forward()                                                    # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.forward()
            times.append(time.perf_counter() - t0)
        s = median(times)
        res = {"vision_seconds_per_tile": s, "vision_gflops": model.flops() / s / 1e9,
               "vision_gflop_per_tile": model.flops() / 1e9}
        del model
        release_memory()
        return res

    # ---- language model: DeepSeek-V2 decoder

    def rms_norm(x, w, eps):
        """HF's DeepseekV2RMSNorm: in float32, back to the input dtype, times the weight."""
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return w * xf.to(x.dtype)

    def rotate(x, cos, sin):
        """Rotary embedding, rotate-half form; x [..., T, d], cos/sin [T, d]."""
        h = x.shape[-1] // 2
        rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
        return x * cos + rot * sin

    def swiglu(x, w):
        return F.linear(F.silu(F.linear(x, w["gate"])) * F.linear(x, w["up"]), w["down"])

    class LM:
        def __init__(self, lm, W, max_ctx):
            self.lm, self.dtype = lm, W.dtype
            self.layers = [dict(moe=m) for m in lm["is_moe"]]
            for name, i, shape, _ in lm_shapes(lm):
                fresh = name == "router"
                t = W(*shape, fresh=fresh)
                if i is None:
                    setattr(self, name, t)
                    continue
                L = self.layers[i]
                if name.startswith("e"):                    # routed expert e<n>.<matrix>
                    e, m = name[1:].split(".")
                    L.setdefault("experts", [dict() for _ in range(lm["n_routed_experts"])])
                    L["experts"][int(e)][m] = t
                elif "." in name:                           # shared.<m>, dense.<m>
                    part, m = name.split(".")
                    L.setdefault(part, {})[m] = t
                else:
                    L[name] = t
            if lm["tie_word_embeddings"]:
                self.lm_head = self.embed
            D = lm["hidden_size"]
            for L in self.layers:
                L["attn_norm"], L["ffn_norm"] = W.ones(D), W.ones(D)
                if lm["use_mla"]:
                    L["kv_a_norm"] = W.ones(lm["kv_lora_rank"])
                    if lm["q_lora_rank"]:
                        L["q_a_norm"] = W.ones(lm["q_lora_rank"])
                if L["moe"] and lm["topk_method"] == "noaux_tc":
                    L["router_bias"] = torch.zeros(lm["n_routed_experts"])
            self.final_norm = W.ones(D)
            # rotary tables for every position the runs reach
            rd = lm["qk_rope_head_dim"] if lm["use_mla"] else lm["head_dim"]
            inv = 1.0 / lm["rope_theta"] ** (torch.arange(0, rd, 2).float() / rd)
            ang = torch.outer(torch.arange(max_ctx).float(), inv)
            ang = torch.cat((ang, ang), dim=-1)
            self.cos, self.sin = ang.cos().to(W.dtype), ang.sin().to(W.dtype)
            # preallocated KV cache: per layer K [heads, ctx, dk], V [heads, ctx, dv]
            if lm["use_mla"]:
                kh, dk, dv = (lm["num_attention_heads"],
                              lm["qk_nope_head_dim"] + lm["qk_rope_head_dim"], lm["v_head_dim"])
            else:
                kh, dk, dv = lm["num_key_value_heads"], lm["head_dim"], lm["head_dim"]
            self.k_cache = [torch.zeros(kh, max_ctx, dk, dtype=W.dtype) for _ in self.layers]
            self.v_cache = [torch.zeros(kh, max_ctx, dv, dtype=W.dtype) for _ in self.layers]

        def attn_mha(self, L, i, h, pos):
            lm = self.lm
            T, H, kvh, hd = h.shape[0], lm["num_attention_heads"], \
                lm["num_key_value_heads"], lm["head_dim"]
            q = F.linear(h, L["wq"]).view(T, H, hd).transpose(0, 1)
            k = F.linear(h, L["wk"]).view(T, kvh, hd).transpose(0, 1)
            v = F.linear(h, L["wv"]).view(T, kvh, hd).transpose(0, 1)
            cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            self.k_cache[i][:, pos:pos + T] = k
            self.v_cache[i][:, pos:pos + T] = v
            K, V = self.k_cache[i][:, :pos + T], self.v_cache[i][:, :pos + T]
            if kvh != H:                                    # HF's repeat_kv
                K, V = K.repeat_interleave(H // kvh, 0), V.repeat_interleave(H // kvh, 0)
            o = attention(q, K, V, causal=True)
            return F.linear(o.transpose(0, 1).reshape(T, H * hd), L["wo"])

        def attn_mla(self, L, i, h, pos):
            """Multi-head latent attention, plain form (HF's DeepseekV2Attention): the latent
            is expanded to per-head keys and values, which the cache holds."""
            lm = self.lm
            T, H = h.shape[0], lm["num_attention_heads"]
            nope, rope, dv, r = (lm["qk_nope_head_dim"], lm["qk_rope_head_dim"],
                                 lm["v_head_dim"], lm["kv_lora_rank"])
            if lm["q_lora_rank"]:
                q = F.linear(rms_norm(F.linear(h, L["q_a"]), L["q_a_norm"],
                                      lm["rms_norm_eps"]), L["q_b"])
            else:
                q = F.linear(h, L["wq"])
            q = q.view(T, H, nope + rope).transpose(0, 1)
            q_nope, q_pe = q.split([nope, rope], dim=-1)
            ckv, k_pe = F.linear(h, L["kv_a"]).split([r, rope], dim=-1)
            kv = F.linear(rms_norm(ckv, L["kv_a_norm"], lm["rms_norm_eps"]), L["kv_b"])
            kv = kv.view(T, H, nope + dv).transpose(0, 1)
            k_nope, v = kv.split([nope, dv], dim=-1)
            cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
            q_pe, k_pe = rotate(q_pe, cos, sin), rotate(k_pe.unsqueeze(0), cos, sin)
            q = torch.cat((q_nope, q_pe), dim=-1)
            k = torch.cat((k_nope, k_pe.expand(H, T, rope)), dim=-1)
            self.k_cache[i][:, pos:pos + T] = k
            self.v_cache[i][:, pos:pos + T] = v
            o = attention(q, self.k_cache[i][:, :pos + T], self.v_cache[i][:, :pos + T],
                          causal=True)
            return F.linear(o.transpose(0, 1).reshape(T, H * dv), L["wo"])

        def route(self, L, h):
            """HF's MoEGate: scores in float32, top-k experts and their weights."""
            lm = self.lm
            T, E, k = h.shape[0], lm["n_routed_experts"], lm["num_experts_per_tok"]
            logits = F.linear(h.float(), L["router"].float())
            scores = logits.sigmoid() if lm["scoring_func"] == "sigmoid" else \
                logits.softmax(dim=-1, dtype=torch.float32)
            G, method = lm["n_group"], lm["topk_method"]
            choice = scores + L["router_bias"] if method == "noaux_tc" else scores
            if method != "greedy" and G > 1:
                grouped = choice.view(T, G, E // G)
                gs = grouped.topk(2, dim=-1).values.sum(-1) if method == "noaux_tc" \
                    else grouped.max(dim=-1).values
                keep = torch.zeros_like(gs).scatter_(1, gs.topk(lm["topk_group"], dim=-1)
                                                     .indices, 1)
                choice = choice.masked_fill(~keep.bool().repeat_interleave(E // G, 1), 0.0)
            idx = torch.topk(choice, k=k, dim=-1, sorted=False).indices
            w = scores.gather(1, idx)
            if k > 1 and lm["norm_topk_prob"]:
                w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
            return idx, w * lm["routed_scaling_factor"]

        def moe(self, L, h):
            """HF's moe_infer: sort the (token, expert) pairs by expert, run each expert over
            its tokens, scatter back and sum with the router weights."""
            idx, w = self.route(L, h)
            counts = torch.bincount(idx.view(-1), minlength=self.lm["n_routed_experts"])
            order = idx.view(-1).argsort()
            xs = h[order // idx.shape[1]]
            outs, start = [], 0
            for e, n in enumerate(counts.tolist()):
                if n:
                    outs.append(swiglu(xs[start:start + n], L["experts"][e]))
                    start += n
            y = torch.empty_like(xs)
            y[order] = torch.cat(outs, dim=0)
            y = (y.view(*idx.shape, -1).type(w.dtype) * w.unsqueeze(-1)).sum(dim=1).type(h.dtype)
            if "shared" in L:
                y = y + swiglu(h, L["shared"])
            return y

        def forward(self, ids, pos):
            """Runs token ids [T] at positions pos.. through the decoder (filling the cache)
            and returns the logits of the last one."""
            lm = self.lm
            x = F.embedding(ids, self.embed)
            attn = self.attn_mla if lm["use_mla"] else self.attn_mha
            for i, L in enumerate(self.layers):
                x = x + attn(L, i, rms_norm(x, L["attn_norm"], lm["rms_norm_eps"]), pos)
                h = rms_norm(x, L["ffn_norm"], lm["rms_norm_eps"])
                x = x + (self.moe(L, h) if L["moe"] else swiglu(h, L["dense"]))
            x = rms_norm(x[-1:], self.final_norm, lm["rms_norm_eps"])
            return F.linear(x, self.lm_head).float()[0]

        def generate(self, ids, n):
            """Prefill of ids, then n greedy tokens; returns (prefill s, decode s)."""
            t0 = time.perf_counter()
            nxt = int(self.forward(ids, 0).argmax())
            t1 = time.perf_counter()
            pos = ids.shape[0]
            for _ in range(n):
                nxt = int(self.forward(torch.tensor([nxt]), pos).argmax())
                pos += 1
            return t1 - t0, time.perf_counter() - t1

    def bench_lm(lm, dtype, args):
        params, per_token, head_flops, pair_flops = lm_counts(lm)
        W = Weights(dtype, seed=2)
        t0 = time.perf_counter()
        model = LM(lm, W, args.prompt_tokens + args.gen_tokens + 1)
        build_s = time.perf_counter() - t0
        del W
        gen = torch.Generator().manual_seed(3)
        long_ids = torch.randint(lm["vocab_size"], (args.prompt_tokens,), generator=gen)
        short_ids = torch.randint(lm["vocab_size"], (SHORT_PROMPT,), generator=gen)
        model.generate(short_ids, 2)                                       # warm-up
        pf, dl, ds = [], [], []
        for _ in range(args.repeats):
            p, d = model.generate(long_ids, args.gen_tokens)
            pf.append(args.prompt_tokens / p)
            dl.append(args.gen_tokens / d)
        for _ in range(args.repeats):
            _, d = model.generate(short_ids, args.gen_tokens)
            ds.append(args.gen_tokens / d)
        n = args.prompt_tokens
        prefill_tps = median(pf)
        flops = per_token * n + head_flops + pair_flops * n * (n + 1) / 2
        res = {
            "lm_build_seconds": build_s,
            "prompt_tokens": n,
            "prefill_tokens_per_second": prefill_tps,
            "prefill_gflops": flops / (n / prefill_tps) / 1e9,
            "short_context": SHORT_PROMPT + args.gen_tokens // 2,
            "decode_tokens_per_second_short": median(ds),
            "long_context": n + args.gen_tokens // 2,
            "decode_tokens_per_second_long": median(dl),
        }
        del model
        release_memory()
        return res

    # ---- driver

    one, many = busy_check()                      # leaves torch on args.threads threads
    busy = args.threads > 1 and many > 1.5 * one
    vision, projector, lm = read_config(args.config, args.layers)
    params, per_token, _, _ = lm_counts(lm)
    flags = cpu_flags()
    dtypes = {"f32": [torch.float32], "bf16": [torch.bfloat16],
              "both": [torch.float32, torch.bfloat16]}[args.dtype]
    out = {
        "config": os.path.abspath(args.config),
        "variant": lm["variant"],
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(flags),
        "cpus_online": os.cpu_count(),
        "onednn": torch.backends.mkldnn.is_available(),
        "allocator": allocator_env(),
        "load_average": load_average(),
        "busy_warning": busy,
        "scaled_dot_product_attention": has_sdpa,
        "layers_override": args.layers or None,
        "lm_layers": lm["num_hidden_layers"],
        "vit_layers": vision["layers"],
        "lm_params": params,
        "lm_active_params_per_token": per_token / 2,
        "repeats": args.repeats,
        "gen_tokens": args.gen_tokens,
        "use_mla": lm["use_mla"],
        "results": {},
    }
    if busy:
        progress(f"WARNING: the machine looks busy (load {out['load_average']}): a 1 M-element "
                 f"add takes {many * 1e3:.2f} ms on {args.threads} threads against "
                 f"{one * 1e3:.2f} ms on 1, so every parallel op waits for the CPUs; the "
                 "figures will be far too low (decode and bf16 most of all)")
    if not args.json:
        print_header(out, lm, vision)

    for dtype in dtypes:
        name = "f32" if dtype == torch.float32 else "bf16"
        r = out["results"][name] = {}
        release_memory()
        reset_peak_rss()
        with torch.inference_mode():
            r.update(bench_vision(vision, projector, dtype, args.repeats))
            progress(f"{name}: vision {r['vision_seconds_per_tile']:.3f} s per tile")
            need = params * (4 if dtype == torch.float32 else 2)
            avail = mem_available()
            if avail is not None and need > 0.85 * avail:
                r["lm_skipped"] = (f"the language model needs {need / 1e9:.1f} GB at {name}, "
                                   f"{avail / 1e9:.1f} GB are available")
                progress(f"{name}: {r['lm_skipped']}; language model skipped")
            else:
                progress(f"{name}: building the language model ({need / 1e9:.1f} GB)")
                r.update(bench_lm(lm, dtype, args))
                progress(f"{name}: prefill {r['prefill_tokens_per_second']:.1f} tokens/s, "
                         f"decode {r['decode_tokens_per_second_short']:.2f} / "
                         f"{r['decode_tokens_per_second_long']:.2f} tokens/s")
        r["peak_rss_mb"] = peak_rss_mb()

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_table(out)


SHORT_PROMPT = 16  # tokens of the short prompt, about the engine bench's one-line question


def progress(msg):
    """Progress on stderr, so that stdout holds only the table or the JSON."""
    print(f"pytorch_bench: {msg}", file=sys.stderr, flush=True)


def print_header(o, lm, vision):
    attn = (f"MLA {lm['num_attention_heads']} heads (kv_lora {lm['kv_lora_rank']}, q_lora "
            f"{lm['q_lora_rank'] or 'none'})" if lm["use_mla"] else
            f"MHA {lm['num_attention_heads']} heads of {lm['head_dim']}")
    moe = (f"{lm['n_routed_experts']} routed experts (top {lm['num_experts_per_tok']}) + "
           f"{lm['n_shared_experts']} shared" if lm["n_routed_experts"] else "dense")
    print("PyTorch eager on the CPU, the comparison for engine/BENCHMARKS.md")
    print(f"machine     {o['cpu']} ({o['cpu_features']}), {o['threads']} threads, "
          f"{o['cpus_online']} CPUs online, load average {o['load_average']}" +
          (" - BUSY, figures not valid" if o["busy_warning"] else ""))
    print(f"torch       {o['torch_version']}, oneDNN {'yes' if o['onednn'] else 'no'}, "
          f"scaled_dot_product_attention {'yes' if o['scaled_dot_product_attention'] else 'no'}")
    print(f"allocator   {o['allocator']}")
    print(f"model       {o['config']}: DeepSeek-VL2 {lm['variant']}, random weights")
    print(f"            LM {lm['num_hidden_layers']} layers, hidden {lm['hidden_size']}, "
          f"{attn}, {moe}; {o['lm_params'] / 1e9:.2f} B parameters, "
          f"{o['lm_active_params_per_token'] / 1e9:.2f} B active per token (without embedding "
          "and lm_head)")
    print(f"            ViT {vision['layers']} layers, width {vision['width']}, "
          f"{vision['heads']} heads, MLP {vision['mlp_hidden']}, {vision['grid'] ** 2} patches")
    if o["layers_override"]:
        print(f"            --layers {o['layers_override']}: NOT the real model, figures are "
              "not comparable")
    print(f"            medians of {o['repeats']} runs after one warm-up", flush=True)


def print_table(o):
    res = o["results"]
    names = list(res)
    label = {"f32": "float32", "bf16": "bfloat16"}
    rows = [("", [label[n] for n in names])]

    def row(title, key, fmt):
        rows.append((title, [fmt.format(res[n][key]) if key in res[n] else "skipped"
                             for n in names]))

    any_lm = next((res[n] for n in names if "prompt_tokens" in res[n]), None)
    row("vision s/tile", "vision_seconds_per_tile", "{:.3f}")
    row("vision GFLOP/s", "vision_gflops", "{:.1f}")
    if any_lm:
        row(f"prefill tok/s ({any_lm['prompt_tokens']} tokens)", "prefill_tokens_per_second",
            "{:.1f}")
        row("prefill GFLOP/s", "prefill_gflops", "{:.1f}")
        row(f"decode tok/s (context {any_lm['short_context']})",
            "decode_tokens_per_second_short", "{:.2f}")
        row(f"decode tok/s (context {any_lm['long_context']})",
            "decode_tokens_per_second_long", "{:.2f}")
    else:
        row("language model", "-", "")
    row("peak RSS MB", "peak_rss_mb", "{:.0f}")
    w0 = max(len(r[0]) for r in rows)
    print()
    for title, cells in rows:
        print(f"{title:<{w0}}  " + "  ".join(f"{c:>12}" for c in cells))
    for n in names:
        if "lm_skipped" in res[n]:
            print(f"note: {label[n]} language model skipped: {res[n]['lm_skipped']}")
    print("GFLOP/s count the FLOPs the way the engine's bench does" +
          (" (attention as in the engine's absorbed MLA: compare tokens/s)" if o["use_mla"]
           else ""))


def main():
    ap = argparse.ArgumentParser(
        description="PyTorch eager CPU baseline for the workloads of `vl2 bench` "
                    "(random weights, the config's shapes).")
    ap.add_argument("--config", required=True, help="a DeepSeek-VL2 checkpoint's config.json")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--dtype", choices=("f32", "bf16", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=5, help="runs per figure (default 5)")
    ap.add_argument("--prompt-tokens", type=int, default=1500,
                    help="length of the long prompt (default 1500)")
    ap.add_argument("--gen-tokens", type=int, default=32,
                    help="tokens decoded per run (default 32)")
    ap.add_argument("--layers", type=int, default=0,
                    help="override the LM and ViT layer counts (smoke tests only: the "
                         "figures are then not comparable)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    if os.path.isdir(args.config):
        args.config = os.path.join(args.config, "config.json")
    if (args.threads < 1 or args.repeats < 1 or args.prompt_tokens < 1 or
            args.gen_tokens < 1 or args.layers < 0):
        ap.error("counts must be positive")
    torch = import_torch(args.threads)
    run(args, torch)


if __name__ == "__main__":
    main()
