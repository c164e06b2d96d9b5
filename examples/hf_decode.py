"""HF transformers Llama greedy decoding with every nn.Linear through jitgemm, against the same model unpatched.

A `LlamaForCausalLM` (transformers) is built from a `LlamaConfig` with random weights (no download: the
weights come from `torch.manual_seed`), about 1.1 B parameters by default, bf16 on the GPU. The script
decodes greedily at each batch size twice with the same model object: unpatched (torch's F.linear, i.e.
cuBLAS) and with `jitgemm.torch.patch_linears(model)`, which sends every linear layer whose call has at
most 128 tokens through `jitgemm.gemm` (then `unpatch` restores the model). Decode steps carry `batch`
tokens, so they run through jitgemm; the prefill carries batch x prompt length tokens, so at batch 8 it
stays with torch, as patch_linears intends.

It reports, per batch size:
  - tokens/s of `model.generate` (greedy, KV cache) both ways, best of --runs after a warm-up, the two ways
    alternating run by run, and the ratio;
  - token agreement: the fraction of generated tokens identical both ways, and each row's first divergence;
  - teacher-forced logits: the prompt plus torch's generated tokens fed to both models through the KV cache in
    chunks of 128 // batch tokens per row (at most 128 tokens per call, so that every linear layer runs
    through jitgemm), max |diff|, relative error and top-1 agreement over all positions; also the same with
    one token per call (decode's GEMM shapes), and torch against itself (one token per call against the
    chunks): the size of bf16 rounding noise.
The last line is a check (exit 1 if it fails): jitgemm's teacher-forced relative error at most 0.1 (or 4x
torch's own noise if that is larger); a wrong GEMM gives about 1.

Random weights give nearly flat logits: the top-2 logit margins are small, so greedy decoding can flip on
a single rounding and then diverge for good. The teacher-forced comparison is the measure of the GEMMs; the
token agreement is reported with torch's top-2 margin where each row first diverged.

    python examples/hf_decode.py                          # ~1.1 B parameters, batch 1 and 8, 64 new tokens
    python examples/hf_decode.py --tiny                   # a 2-layer smoke configuration (seconds)
    python examples/hf_decode.py --batch 1,4,16 --new-tokens 128 --json hf_decode.json
    python examples/hf_decode.py --layers 4 --hidden 1024 --intermediate 4096 --heads 16 --kv-heads 4
    python examples/hf_decode.py --fuse-siblings          # q/k/v and gate/up as one GEMM each (patch_linears'
                                                          # fuse_siblings=True: learned in the first steps)
    python examples/hf_decode.py --fuse-siblings both     # ... and the unfused patched model, all three alternating

Needs a GPU, torch and transformers (`pip install torch transformers`). Eager mode: tokens/s includes Python
and kernel-launch cost (jitgemm's per-call host cost too); `--loop manual` decodes with a hand-written argmax
loop in place of model.generate (no per-step host sync).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

UNFUSED = "jitgemm unfused"  # --fuse-siblings both: the third way, patch_linears without fuse_siblings
MAX_TOKENS = 128      # patch_linears' default: calls with more tokens stay with torch
REL_ERR_LIMIT = 0.1   # teacher-forced relative error that fails the check (a wrong GEMM gives ~1)
DEFAULT_GEOMETRY = dict(layers=16, hidden=2048, intermediate=8192, heads=32, kv_heads=8, vocab=32000,
                        prompt_len=32, new_tokens=64)
TINY_GEOMETRY = dict(layers=2, hidden=256, intermediate=768, heads=4, kv_heads=2, vocab=4096,
                     prompt_len=16, new_tokens=16)
INSTALL_HINT = "pip install torch transformers"
DEVICE = "cuda"       # torch's device for the model and prompts


# ---- pure helpers (no torch; the tests run them on the CPU) -----------------------------------------------
def parse_batches(text: str) -> list[int]:
    """'1,8' -> [1, 8]: positive, distinct, in the given order."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        b = int(part)
        if b < 1:
            raise ValueError(f"batch sizes must be >= 1, got {b}")
        if b not in out:
            out.append(b)
    if not out:
        raise ValueError(f"no batch size in {text!r}")
    return out


def compare_tokens(ref, got) -> dict:
    """Greedy tokens of two runs ([rows, steps], or one row as a flat list): how many are identical position
    by position, and each row's first step where they differ (None where the row is identical)."""
    ref = np.atleast_2d(np.asarray(ref))
    got = np.atleast_2d(np.asarray(got))
    if ref.shape != got.shape:
        raise ValueError(f"token arrays differ in shape: {ref.shape} vs {got.shape}")
    same = ref == got
    rows = []
    for r in range(same.shape[0]):
        diff = np.flatnonzero(~same[r])
        rows.append({"row": r, "identical": int(same[r].sum()),
                     "first_divergence": int(diff[0]) if diff.size else None})
    return {"tokens": int(same.size), "identical": int(same.sum()),
            "fraction": float(same.mean()) if same.size else 1.0, "rows": rows}


def top2_margin(logits) -> np.ndarray:
    """Top-1 minus top-2 logit at each position (last axis = vocabulary); 0 is an exact tie."""
    logits = np.asarray(logits, np.float32)
    two = np.partition(logits, -2, axis=-1)[..., -2:]
    return two[..., 1] - two[..., 0]


def compare_logits(test, ref) -> dict:
    """Logits of one sequence from two computations ([..., vocab]): max |test - ref|, the relative error
    ||test - ref|| / ||ref||, top-1 agreement over all positions, and the largest top-2 margin of `ref` at
    a position whose top-1 flipped (a flip where that margin is within the max |diff| is a near-tie)."""
    test = np.asarray(test, np.float32)
    ref = np.asarray(ref, np.float32)
    if test.shape != ref.shape:
        raise ValueError(f"logit arrays differ in shape: {test.shape} vs {ref.shape}")
    vocab = ref.shape[-1]
    t2, r2 = test.reshape(-1, vocab), ref.reshape(-1, vocab)
    diff = t2 - r2
    ref_norm = float(np.linalg.norm(r2))
    flips = np.argmax(t2, axis=-1) != np.argmax(r2, axis=-1)
    margin = top2_margin(r2)
    return {
        "positions": int(r2.shape[0]),
        "max_abs_diff": float(np.abs(diff).max()) if diff.size else 0.0,
        "rel_err": float(np.linalg.norm(diff)) / ref_norm if ref_norm else 0.0,
        "top1_agree": int(r2.shape[0] - flips.sum()),
        "top1_agree_fraction": float(1.0 - flips.mean()) if flips.size else 1.0,
        "flip_max_ref_margin": float(margin[flips].max()) if flips.any() else None,
        "ref_median_margin": float(np.median(margin)) if margin.size else None,
        "ref_ties": int((margin == 0).sum()),
    }


def prefill_note(batches: list[int], prompt_len: int, max_tokens: int) -> str:
    """Which calls patch_linears leaves to torch (more than max_tokens tokens), in words."""
    parts = []
    for b in batches:
        n = b * prompt_len
        parts.append(f"batch {b}: {n} tokens -> {'jitgemm' if n <= max_tokens else 'torch'}")
    note = f"prefill ({'; '.join(parts)}); decode steps: batch tokens -> jitgemm"
    big = [b for b in batches if b > max_tokens]
    if big:
        note += f" (except batch {', '.join(map(str, big))}: over {max_tokens} tokens, all torch)"
    return note


def format_params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


# ---- environment ------------------------------------------------------------------------------------------
def _jitgemm():
    """jitgemm from this checkout when the script runs from it (examples/ sits beside jitgemm/)."""
    try:
        import jitgemm
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import jitgemm
    return jitgemm


def missing_requirements() -> str | None:
    """None when torch, transformers and jitgemm.torch are importable, else what is missing (one line)."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        names = " and ".join(f"`{m}`" for m in missing)
        return f"the {names} package{'s are' if len(missing) > 1 else ' is'} not installed ({INSTALL_HINT})"
    _jitgemm()
    if importlib.util.find_spec("jitgemm.torch") is None:
        return "this jitgemm has no `jitgemm.torch` module (patch_linears)"
    return None


# ---- the model and the runs (torch) -----------------------------------------------------------------------
def build_model(geo: dict, dtype, seed: int, init_std: float, max_positions: int):
    """LlamaForCausalLM with random weights, made directly on the GPU in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig
    config = LlamaConfig(
        vocab_size=geo["vocab"], hidden_size=geo["hidden"], intermediate_size=geo["intermediate"],
        num_hidden_layers=geo["layers"], num_attention_heads=geo["heads"], num_key_value_heads=geo["kv_heads"],
        max_position_embeddings=max_positions, initializer_range=init_std, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)  # no EOS: every row decodes every step
    torch.manual_seed(seed)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def _cache_argument(model) -> str:
    """The forward's name for the KV cache: `cache` in newer transformers 5.x, `past_key_values` before."""
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _new_cache(model):
    from transformers import DynamicCache
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # an older DynamicCache without the config argument
        return DynamicCache()


def generate_fn(model, ids, new_tokens: int, loop: str):
    """A function that decodes `new_tokens` greedily from `ids` [batch, prompt] and returns them [batch, new]."""
    import torch
    prompt_len = ids.shape[1]
    mask = torch.ones_like(ids)
    cache_kw = _cache_argument(model)

    def with_generate():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0)
        return out[:, prompt_len:]

    def by_hand():  # prefill, then one token per step through the KV cache; argmax stays on the GPU
        cache = _new_cache(model)
        tok = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_kw: cache}).logits[:, -1].argmax(-1)
        toks = [tok]
        for _ in range(new_tokens - 1):
            tok = model(input_ids=tok[:, None], use_cache=True, logits_to_keep=1,
                        **{cache_kw: cache}).logits[:, -1].argmax(-1)
            toks.append(tok)
        return torch.stack(toks, dim=1)

    fn = with_generate if loop == "generate" else by_hand

    def run():
        with torch.inference_mode():
            return fn()
    return run


def time_alternating(fn, ways: dict, runs: int) -> dict:
    """A warm-up call of each way, then `runs` rounds of one timed (synchronized) call of each, alternating:
    a host whose speed drifts between runs (±10 % seen on an H100 machine) then favours neither way, where
    timing all of one way first decided a batch-1 ratio. ways: name -> (enter, leave), what switches the
    model to that way and back. Per way: warmup_s, times_s, best_s, cpu_s (the calling thread's CPU time of each
    timed call: what a host that lends its cores to others does not inflate) and best_cpu_s, the first timed
    call's tokens, and whether every timed call gave the same tokens."""
    import torch
    rec = {name: {"times_s": [], "cpu_s": [], "all_tokens": []} for name in ways}
    for rnd in range(runs + 1):
        for name, (enter, leave) in ways.items():
            enter()
            try:
                torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.thread_time()
                out = fn()
                torch.cuda.synchronize()
                dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
            finally:
                leave()
            if rnd == 0:
                rec[name]["warmup_s"] = dt
            else:
                rec[name]["times_s"].append(dt)
                rec[name]["cpu_s"].append(cpu)
                rec[name]["all_tokens"].append(out.cpu().numpy())
    for r in rec.values():
        toks = r.pop("all_tokens")
        r.update(best_s=min(r["times_s"]), best_cpu_s=min(r["cpu_s"]), tokens=toks[0],
                 repeatable=all(np.array_equal(toks[0], t) for t in toks[1:]))
    return rec


def noisy_host_ratios(ref: dict, way: dict) -> dict:
    """Two speed-ups that a host whose speed swings run by run (0.73-1.76 s for one way's decode call on a shared
    H100 machine, session 28) moves less than the best-of ratio: the median over rounds of torch's time / the
    way's time in the same round, and the best CPU time of the calling thread (torch's / the way's)."""
    return {"median_round_ratio": float(np.median(np.array(ref["times_s"]) / np.array(way["times_s"]))),
            "cpu_ratio": ref["best_cpu_s"] / way["best_cpu_s"]}


def teacher_forced_logits(model, seq, chunk: int) -> np.ndarray:
    """float32 logits [batch, len, vocab] of `seq` fed through the KV cache `chunk` tokens per row at a time."""
    import torch
    cache_kw = _cache_argument(model)
    cache = _new_cache(model)
    parts = []
    with torch.inference_mode():
        for s in range(0, seq.shape[1], chunk):
            out = model(input_ids=seq[:, s:s + chunk], use_cache=True, **{cache_kw: cache})
            parts.append(out.logits.float().cpu())
    return torch.cat(parts, dim=1).numpy()


def run_batch(model, jt, ids, a) -> dict:
    """Everything measured at one batch size: the decode timed both ways in alternation (the model patched
    for jitgemm's runs, unpatched for torch's), then the logits of each way (unpatched again at the end)."""
    import torch
    b, prompt_len = ids.shape
    chunk = max(1, min(prompt_len + a.new_tokens, a.max_tokens // b))
    res = {"batch": b, "teacher_forced_chunk": chunk}

    patched = []

    def patch(fuse=a.fuse_siblings != "off"):
        return jt.patch_linears(model, max_tokens=a.max_tokens, fuse_siblings=fuse)
    ways = {"torch": (lambda: None, lambda: None),
            "jitgemm": (lambda: patched.append(patch()), lambda: jt.unpatch(model))}
    if a.fuse_siblings == "both":  # the unfused patched model timed in the same alternation (tokens/s only)
        ways[UNFUSED] = (lambda: patch(False), lambda: jt.unpatch(model))
    jt.routing(reset=True)
    timed = time_alternating(generate_fn(model, ids, a.new_tokens, a.loop), ways, a.runs)
    res["routes"] = jt.routing(reset=True)  # the patched warm-up and timed runs: where each linear call went
    ref, pat = timed["torch"], timed["jitgemm"]
    n_tok = b * a.new_tokens
    keys = ("warmup_s", "times_s", "best_s", "cpu_s", "best_cpu_s", "repeatable")  # a way's timings in the report
    if UNFUSED in timed:
        u = timed[UNFUSED]
        res[UNFUSED] = {**{k: u[k] for k in keys}, "tokens_per_s": n_tok / u["best_s"],
                        "ratio": ref["best_s"] / u["best_s"],
                        "identical_tokens": compare_tokens(ref["tokens"], u["tokens"])["fraction"]}
    seq = torch.cat([ids, torch.as_tensor(ref["tokens"], device=ids.device)], dim=1)
    ref_chunks = teacher_forced_logits(model, seq, chunk)
    ref_steps = teacher_forced_logits(model, seq, 1)

    res["patched_layers"] = patched[0]
    patch()
    try:
        pat_chunks = teacher_forced_logits(model, seq, chunk)
        pat_steps = teacher_forced_logits(model, seq, 1)
    finally:
        res["unpatched_layers"] = jt.unpatch(model)

    res["torch"] = {k: ref[k] for k in keys}
    res["jitgemm"] = {k: pat[k] for k in keys}
    res["noisy_host"] = {name: noisy_host_ratios(ref, timed[name]) for name in timed if name != "torch"}
    res["torch"]["tokens_per_s"] = n_tok / ref["best_s"]
    res["jitgemm"]["tokens_per_s"] = n_tok / pat["best_s"]
    res["ratio"] = res["jitgemm"]["tokens_per_s"] / res["torch"]["tokens_per_s"]

    agree = compare_tokens(ref["tokens"], pat["tokens"])
    margins = top2_margin(ref_steps)  # torch's margins with one token per call, as in decoding
    for row in agree["rows"]:
        s = row["first_divergence"]
        row["torch_margin_there"] = None if s is None else float(margins[row["row"], prompt_len - 1 + s])
    res["agreement"] = agree
    res["teacher_forced"] = {
        "jitgemm_vs_torch_chunks": compare_logits(pat_chunks, ref_chunks),
        "jitgemm_vs_torch_one_token": compare_logits(pat_steps, ref_steps),
        "torch_one_token_vs_torch_chunks": compare_logits(ref_steps, ref_chunks),
    }
    res["tokens_torch"] = ref["tokens"].tolist()
    res["tokens_jitgemm"] = pat["tokens"].tolist()
    return res


# ---- the report -------------------------------------------------------------------------------------------
def _divergences(agree: dict, most: int = 4) -> str:
    rows = [r for r in agree["rows"] if r["first_divergence"] is not None]
    if not rows:
        return "none"
    text = ", ".join(f"row {r['row']} @{r['first_divergence']} (margin {r['torch_margin_there']:.3g})"
                     for r in rows[:most])
    return text + (f", +{len(rows) - most} rows" if len(rows) > most else "")


def routes_text(routes: dict, decode_calls: int) -> str:
    """The patched runs' routing counts in one line, biggest first, with what a steady decode loop should
    show: every decode-step call on jitgemm, cold-path calls (planning) only in the first run."""
    if not routes:
        return "no routed call was counted"
    parts = [f"{why} {n:,}" for why, n in sorted(routes.items(), key=lambda kv: -kv[1])]
    return "; ".join(parts) + f" (decode-step calls expected on jitgemm: {decode_calls:,})"


def print_report(rep: dict) -> None:
    g, s = rep["model"], rep["settings"]
    print(f"model: LlamaForCausalLM from LlamaConfig, random weights (seed {s['seed']}, initializer_range "
          f"{g['initializer_range']}): {g['layers']} layers, hidden {g['hidden']}, intermediate {g['intermediate']}, "
          f"{g['heads']} heads / {g['kv_heads']} KV, vocab {g['vocab']}; {format_params(g['parameters'])} "
          f"parameters, {s['dtype']}")
    print(f"GPU: {rep['gpu']}; torch {rep['versions']['torch']}, transformers {rep['versions']['transformers']}, "
          f"jitgemm {rep['versions']['jitgemm']}")
    print(f"compared: greedy decoding ({s['loop_text']}), prompt {s['prompt_len']} random ids, "
          f"{s['new_tokens']} new tokens, the same model unpatched (torch F.linear) vs "
          f"jitgemm.torch.patch_linears (max_tokens {s['max_tokens']}"
          f"{', fuse_siblings' if s['fuse_siblings'] != 'off' else ''}: "
          f"{rep['patched_layers']} nn.Linear layers)")
    print(f"routing: {s['routing']}")
    print(f"tokens/s = batch x new tokens / wall time of one decode call (prefill included), best of {s['runs']} "
          f"after a warm-up, the two ways alternating run by run")
    print()
    print(f"{'batch':>5}  {'torch tok/s':>11}  {'jitgemm tok/s':>13}  {'ratio':>6}  {'identical tokens':>18}  "
          f"first divergence (row @step, torch's top-2 margin there)")
    for r in rep["results"]:
        ag = r["agreement"]
        same = f"{ag['identical']}/{ag['tokens']} ({100 * ag['fraction']:.0f}%)"
        print(f"{r['batch']:>5}  {r['torch']['tokens_per_s']:>11.1f}  {r['jitgemm']['tokens_per_s']:>13.1f}  "
              f"{r['ratio']:>5.2f}x  {same:>18}  {_divergences(ag)}")
    for r in rep["results"]:
        if UNFUSED in r:
            u = r[UNFUSED]
            print(f"{r['batch']:>5}  patch_linears without fuse_siblings, same alternation: "
                  f"{u['tokens_per_s']:.1f} tok/s, {u['ratio']:.2f}x torch, "
                  f"{100 * u['identical_tokens']:.0f}% of torch's tokens")
    for r in rep["results"]:
        for name, n in r.get("noisy_host", {}).items():
            print(f"{r['batch']:>5}  {name}, against a noisy host: median of the rounds' ratios "
                  f"{n['median_round_ratio']:.3f}x, best CPU time of the calling thread {n['cpu_ratio']:.3f}x")
    print()
    runs = s["runs"] + 1  # the warm-up run counts too
    for r in rep["results"]:
        decode = runs * (s["new_tokens"] - 1) * rep["patched_layers"]
        print(f"batch {r['batch']} routing over {runs} patched runs: {routes_text(r.get('routes', {}), decode)}")
    print()
    print(f"teacher-forced logits over prompt + torch's {s['new_tokens']} tokens (every position):")
    print(f"{'batch':>5}  {'compared':<44}  {'max|diff|':>9}  {'rel err':>8}  {'top-1 agree':>13}  "
          f"largest torch margin at a flip")
    labels = {"jitgemm_vs_torch_chunks": "jitgemm vs torch, {c}-token chunks",
              "jitgemm_vs_torch_one_token": "jitgemm vs torch, one token per call",
              "torch_one_token_vs_torch_chunks": "torch vs torch, one token per call vs chunks"}
    for r in rep["results"]:
        for key, label in labels.items():
            c = r["teacher_forced"][key]
            flip = "-" if c["flip_max_ref_margin"] is None else f"{c['flip_max_ref_margin']:.3g}"
            agree = f"{c['top1_agree']}/{c['positions']}"
            print(f"{r['batch']:>5}  {label.format(c=r['teacher_forced_chunk']):<44}  {c['max_abs_diff']:>9.4g}  "
                  f"{c['rel_err']:>8.2e}  {agree:>13}  {flip}")
    notes = []
    for r in rep["results"]:
        if not (r["torch"]["repeatable"] and r["jitgemm"]["repeatable"]):
            notes.append(f"batch {r['batch']}: repeated runs gave different tokens "
                         f"(torch {r['torch']['repeatable']}, jitgemm {r['jitgemm']['repeatable']})")
    first = ", ".join(f"batch {r['batch']} {r['jitgemm']['warmup_s']:.1f} s" for r in rep["results"])
    notes.append(f"first patched call (jitgemm compiles or loads its kernels): {first}")
    for r in rep["results"]:
        if r["unpatched_layers"] != r["patched_layers"]:
            notes.append(f"batch {r['batch']}: patched {r['patched_layers']} layers but unpatch restored "
                         f"{r['unpatched_layers']}")
    print()
    for n in notes:
        print(f"note: {n}")
    ck = rep["check"]
    if rep["patched_layers"] == 0:
        print("check failed: patch_linears patched no layer, nothing was compared")
        return
    print(f"check{'' if ck['ok'] else ' failed'}: jitgemm vs torch teacher-forced rel err {ck['worst_rel_err']:.2e} "
          f"{'<=' if ck['ok'] else '>'} {ck['limit']:.3g} at every batch size (a wrong GEMM gives ~1)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a 2-layer, hidden-256 smoke configuration")
    p.add_argument("--layers", type=int, help=f"decoder layers (default {DEFAULT_GEOMETRY['layers']})")
    p.add_argument("--hidden", type=int, help=f"hidden size (default {DEFAULT_GEOMETRY['hidden']})")
    p.add_argument("--intermediate", type=int, help=f"MLP size (default {DEFAULT_GEOMETRY['intermediate']})")
    p.add_argument("--heads", type=int, help=f"attention heads (default {DEFAULT_GEOMETRY['heads']})")
    p.add_argument("--kv-heads", type=int, help=f"KV heads (default {DEFAULT_GEOMETRY['kv_heads']})")
    p.add_argument("--vocab", type=int, help=f"vocabulary size (default {DEFAULT_GEOMETRY['vocab']})")
    p.add_argument("--prompt-len", type=int,
                   help=f"random prompt ids per row (default {DEFAULT_GEOMETRY['prompt_len']})")
    p.add_argument("--new-tokens", type=int, help=f"tokens to generate (default {DEFAULT_GEOMETRY['new_tokens']})")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--init-std", type=float, default=0.02, help="LlamaConfig.initializer_range (default 0.02)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the weights; seed+1 for the prompt")
    p.add_argument("--runs", type=int, default=3, help="timed runs per way after the warm-up (best is reported)")
    p.add_argument("--loop", default="generate", choices=["generate", "manual"],
                   help="model.generate, or a hand-written greedy loop over the KV cache (no per-step host sync)")
    p.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="patch_linears' max_tokens (default 128)")
    p.add_argument("--fuse-siblings", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                   help="patch_linears(fuse_siblings=True): q/k/v and gate/up each run as one GEMM once learned; "
                        "'both' also times the unfused patched model in the same alternation")
    p.add_argument("--json", type=Path, default=None, help="also write the report to this JSON file")
    a = p.parse_args(argv)
    geo = dict(TINY_GEOMETRY if a.tiny else DEFAULT_GEOMETRY)
    for k in geo:
        if getattr(a, k) is not None:
            geo[k] = getattr(a, k)
    for k, v in geo.items():
        if v < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    if geo["hidden"] % geo["heads"] or geo["heads"] % geo["kv_heads"]:
        p.error(f"--hidden ({geo['hidden']}) must be a multiple of --heads ({geo['heads']}), "
                f"and --heads of --kv-heads ({geo['kv_heads']})")
    if a.runs < 1 or a.max_tokens < 1:
        p.error("--runs and --max-tokens must be >= 1")
    try:
        a.batches = parse_batches(a.batch)
    except ValueError as e:
        p.error(f"--batch: {e}")
    a.geo = geo
    a.prompt_len, a.new_tokens = geo.pop("prompt_len"), geo.pop("new_tokens")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    why = _jitgemm().why_unavailable()
    missing = missing_requirements()
    if why:
        print(f"{why}; this example needs a GPU" + (f", and {missing}" if missing else ""))
        return 0
    if missing:
        print(f"cannot run: {missing}")
        return 0
    import torch
    if not torch.cuda.is_available():
        print(f"cannot run: torch {torch.__version__} sees no CUDA device (a CPU-only build?)")
        return 0
    import transformers
    import jitgemm.torch as jt
    transformers.logging.set_verbosity_error()  # deprecation and generation notices would bury the report

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    total = a.prompt_len + a.new_tokens
    model = build_model(a.geo, dtype, a.seed, a.init_std, max(2048, total))
    gen = torch.Generator().manual_seed(a.seed + 1)
    prompts = torch.randint(3, a.geo["vocab"], (max(a.batches), a.prompt_len), generator=gen).to(DEVICE)
    # the same prompts at every batch size: batch b decodes the first b rows
    results = [run_batch(model, jt, prompts[:b].contiguous(), a) for b in a.batches]

    worst = max(r["teacher_forced"]["jitgemm_vs_torch_chunks"]["rel_err"] for r in results)
    floor = max(r["teacher_forced"]["torch_one_token_vs_torch_chunks"]["rel_err"] for r in results)
    limit = max(REL_ERR_LIMIT, 4 * floor)
    loop_text = ("model.generate, do_sample=False, use_cache=True" if a.loop == "generate"
                 else "a hand-written argmax loop over a DynamicCache")
    rep = {
        "model": dict(a.geo, initializer_range=a.init_std,
                      parameters=sum(p.numel() for p in model.parameters())),
        "gpu": torch.cuda.get_device_name(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "jitgemm": getattr(sys.modules.get("jitgemm"), "__version__", "?")},
        "settings": {"dtype": str(dtype).replace("torch.", ""), "seed": a.seed, "prompt_len": a.prompt_len,
                     "new_tokens": a.new_tokens, "batches": a.batches, "runs": a.runs, "loop": a.loop,
                     "loop_text": loop_text, "max_tokens": a.max_tokens, "fuse_siblings": a.fuse_siblings,
                     "routing": prefill_note(a.batches, a.prompt_len, a.max_tokens),
                     "bf16_reduced_precision_reduction":
                         getattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", None)},
        "compared": ("the same LlamaForCausalLM object unpatched (torch F.linear) and patched with "
                     "jitgemm.torch.patch_linears: greedy tokens (identical fraction, first divergence per row) and "
                     "teacher-forced logits over prompt + torch's tokens"),
        "patched_layers": results[0]["patched_layers"],
        "results": results,
        "check": {"ok": worst <= limit and results[0]["patched_layers"] > 0, "worst_rel_err": worst, "limit": limit,
                  "torch_noise_rel_err": floor},
    }
    print_report(rep)
    if a.json:
        a.json.write_text(json.dumps(rep, indent=2, default=str) + "\n")
        print(f"wrote {a.json}")
    return 0 if rep["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
