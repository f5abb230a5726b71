#!/usr/bin/env python3
"""Collect input second moments for `nvfp4 quantize --method gptq --statistics FILE`.

For every distinct input of an nn.Linear of a Hugging Face model, H = E[x xᵀ] over all calibration
tokens (a K×K fp32 matrix; its diagonal is what collect_importance.py records) is written to a
safetensors file, one tensor per distinct input, named by the first module that reads it
(`model.layers.0.self_attn.q_proj`). Modules that read the same tensor (q/k/v, gate/up) are
detected by identity during the forward pass and listed in the metadata:

  __metadata__ = {"format": "nvfp4-statistics", "version": "1", "tokens": "T",
                  "shared_inputs": "{\"<module>\": \"<module holding the tensor>\", ...}",
                  "model": ..., "calibration": ..., "inputs": "original|substituted|sequential"}

Which model's inputs are recorded:
  (default)          the original model's: every layer sees the inputs of unquantized layers.
  --weights FILE     a second pass: the tensors of FILE (e.g. `nvfp4 dequantize --dtype f32` of a
                     first `--method gptq` output) replace the model's before collecting, so each
                     layer sees the inputs that a quantized model gives it. Quantize the ORIGINAL
                     weights with the result.
  --sequential       what GPTQ does: decoder layer by decoder layer, and inside a layer input by
                     input (q/k/v, then o, then gate/up, then down for a Llama layer), record the
                     moments of one input, quantize the modules that read it with
                     `NVFP4 quantize --method gptq` on a file holding only those weights, and put
                     their dequantized values into the model before the next input is recorded.
                     Every input is then the one the finished quantized model feeds that layer.
                     `nvfp4 quantize MODEL --method gptq --statistics OUT` with the same
                     --quantize-arg options afterwards writes exactly the weights used here.
                     Needs the model's layers as one nn.ModuleList of num_hidden_layers entries.

Calibration text (--text): Python standard-library docstrings and reference topics (texts.py, about
160,000 SmolLM2 tokens; the default), or general English prose (`prose`, about 700,000 tokens), concatenated and cut into --windows windows of --window tokens, from
window --first-window on: never the evaluation text. Runs on the CPU; each batch's
XᵀX is an fp32 product, summed across batches in fp64, written as fp32. Memory: 8·K² bytes per
distinct input while collecting; --sequential also keeps one layer's input for all calibration
tokens (tokens × hidden size × 4 bytes).

Usage:
  collect_statistics.py MODEL_DIR OUT.safetensors [--kind auto|causal-lm|encoder] [--windows 32] [--window 512]
                        [--text docstrings|prose|evaluation-oracle] [--first-window N]
                        [--weights DEQUANT.safetensors | --sequential [--nvfp4 PATH] [--quantize-arg ARG ...]]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402
from weights import KIND_HELP, model_loader, substitute  # noqa: E402


class Moments:
    """Sums of XᵀX per distinct linear input, and which modules share an input."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.shared: dict[str, str] = {}
        self.tokens: dict[str, int] = {}
        self.last: dict[str, object] = {}  # the previous linear's input tensor (kept alive, so identity is exact)

    def hook(self, name, stop_after=False):
        def record(module, inputs):
            x = inputs[0]  # the object itself: detach() would make a new one per call
            previous = self.last.get("tensor")
            if previous is not None and previous is x:
                self.shared[name] = self.shared.get(self.last["name"], self.last["name"])
                return
            self.last["tensor"], self.last["name"] = x, name
            if name in self.shared:
                raise SystemExit(f"error: module {name} shares its input in one batch but not in another")
            x = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
            self.sums[name] = self.sums.get(name, 0) + (x.T @ x).to(torch.float64)  # fp32 per batch, fp64 across
            self.tokens[name] = self.tokens.get(name, 0) + x.shape[0]
            if stop_after:
                raise StopForward
        return record

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: (s / self.tokens[name]).to(torch.float32).contiguous() for name, s in sorted(self.sums.items())}


class StopForward(Exception):
    """Raised by a hook once it has what it needs from a forward pass."""


def write_statistics(path: str, tensors: dict, shared: dict, tokens: int, extra: dict) -> None:
    from safetensors.torch import save_file
    metadata = {"format": "nvfp4-statistics", "version": "1", "tokens": str(tokens),
                "shared_inputs": json.dumps(shared, sort_keys=True), **extra}
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def checkpoint_map(model_dir: str) -> dict[str, str]:
    """Tensor name → the checkpoint file holding it (model.safetensors or the sharded index's files)."""
    from safetensors import safe_open
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            return {name: os.path.join(model_dir, file) for name, file in json.load(f)["weight_map"].items()}
    file = os.path.join(model_dir, "model.safetensors")
    with safe_open(file, framework="pt") as f:
        return {name: file for name in f.keys()}


def checkpoint_tensors(model_dir: str, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors as stored (original dtype)."""
    from safetensors import safe_open
    weight_map = checkpoint_map(model_dir)
    out = {}
    for name in names:
        if name not in weight_map:
            raise SystemExit(f"error: {model_dir}: no tensor {name} (the checkpoint's names must be the module names)")
        with safe_open(weight_map[name], framework="pt") as f:
            out[name] = f.get_tensor(name)
    return out


def collect_whole(model, batches, forward, moments=None, only=None) -> Moments:
    """Moments of every linear input (or of the modules in `only`) over full forward passes."""
    moments = moments or Moments()
    handles = [m.register_forward_pre_hook(moments.hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and (only is None or n in only)]
    with torch.no_grad():
        for batch in batches:
            moments.last.clear()
            forward(batch)
    for h in handles:
        h.remove()
    moments.last.clear()
    return moments


def decoder_layers(model):
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return name, module
    raise SystemExit(f"error: --sequential: the model has no nn.ModuleList of its {count} layers")


def run_layer(layer, state, call):
    args, kwargs = call
    out = layer(state, *args[1:], **kwargs)
    return out[0] if isinstance(out, tuple) else out


def layer_input_groups(layer, prefix, state, call) -> list[list[str]]:
    """The layer's linear modules grouped by the input they read, in the order the forward reads them."""
    order: list[tuple[str, int]] = []
    keep = []  # inputs kept alive so that ids stay unique
    handles = []
    for sub, module in layer.named_modules():
        if isinstance(module, torch.nn.Linear):
            def record(module, inputs, sub=sub):
                keep.append(inputs[0])
                order.append((f"{prefix}.{sub}", id(inputs[0])))
            handles.append(module.register_forward_pre_hook(record))
    with torch.no_grad():
        run_layer(layer, state, call)
    for h in handles:
        h.remove()
    groups: dict[int, list[str]] = {}
    for name, key in order:
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def quantize_group(args, modules, names: list[str], moments: torch.Tensor, tokens: int, work: str,
                   weights: dict | None = None) -> None:
    """Quantizes the weights of `names` (modules reading one input; `weights` if given, else the
    checkpoint's) with nvfp4 and loads the dequantized values into the model."""
    src, stats = os.path.join(work, "group.safetensors"), os.path.join(work, "group.statistics.safetensors")
    quantized, dequantized = os.path.join(work, "group.nvfp4.safetensors"), os.path.join(work, "group.f32.safetensors")
    from safetensors.torch import load_file, save_file
    save_file(weights or checkpoint_tensors(args.model, [n + ".weight" for n in names]), src)
    write_statistics(stats, {names[0]: moments}, {n: names[0] for n in names[1:]}, tokens, {})
    for command in ([args.nvfp4, "quantize", src, "-o", quantized, "--method", "gptq", "--statistics", stats,
                     "--force", "-q", *args.quantize_arg],
                    [args.nvfp4, "dequantize", quantized, "-o", dequantized, "--dtype", "f32", "--force", "-q"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"error: {' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
    values = load_file(dequantized)
    for name in names:
        weight = modules[name].weight
        value = values[name + ".weight"]
        if tuple(value.shape) != tuple(weight.shape):
            raise SystemExit(f"error: nvfp4 returned {name}.weight of shape {tuple(value.shape)}")
        weight.data.copy_(value.float())


def load_weights(modules, weights: dict) -> None:
    for name, value in weights.items():
        modules[name[:-len(".weight")]].weight.data.copy_(value.float())


def group_inputs(layer, modules, first, states, originals, calls, stored) -> torch.Tensor:
    """Σ x_orig x_qᵀ over the calibration tokens for the input of module `first`: x_q from the
    quantized model (`states`, the layer as quantized so far), x_orig from the original model
    (`originals`, the layer's original weights `stored`)."""
    current = {n: modules[n[:-len(".weight")]].weight.detach().clone() for n in stored}
    seen = []

    def grab(module, inputs):
        seen.append(inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float32))
        raise StopForward
    handle = modules[first].register_forward_pre_hook(grab)
    xs = []
    for weights, inputs in ((stored, originals), (current, states)):
        load_weights(modules, weights)
        seen.clear()
        for state, call in zip(inputs, calls):
            try:
                run_layer(layer, state, call)
            except StopForward:
                pass
        xs.append(list(seen))
    handle.remove()
    return sum((o.T @ q).to(torch.float64) for o, q in zip(*xs))


def asymmetric_targets(stored, names, cross: torch.Tensor, gram: torch.Tensor) -> dict:
    """W* = argmin ‖W X_orig − W* X_q‖² + λ‖W* − W‖² = W (Σ x_orig x_qᵀ + λI)(Σ x_q x_qᵀ + λI)⁻¹
    (λ = 1 % of the mean diagonal, as the solver's damping; W* = W where the inputs are equal):
    the weights that map the quantized model's input to what the original layer computes from the
    original input. GPTQ on W* with the quantized inputs' moments then minimizes ‖W x_orig − Ŵ x_q‖²
    (GPTAQ's objective) up to the ridge term."""
    ridge = 0.01 * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    solve = torch.linalg.solve(gram + ridge, (cross + ridge).T).T  # (cross + λI)(gram + λI)⁻¹, gram symmetric
    return {n + ".weight": (stored[n + ".weight"].double() @ solve).to(torch.float32) for n in names}


def collect_sequential(model, batches, forward, args) -> Moments:
    prefix, layers = decoder_layers(model)
    calls = []

    def catch(module, a, kw):
        calls.append((a, kw))
        raise StopForward
    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    with torch.no_grad():
        for batch in batches:
            try:
                forward(batch)
            except StopForward:
                pass
    handle.remove()
    states = [a[0] for a, _ in calls]
    originals = [a[0] for a, _ in calls]  # --targets: the same inputs through the original layers
    modules = dict(model.named_modules())
    moments = Moments()
    targets: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory(prefix="nvfp4-sequential.") as work, torch.no_grad():
        for index, layer in enumerate(layers):
            groups = layer_input_groups(layer, f"{prefix}.{index}", states[0], calls[0])
            if args.targets:
                stored = checkpoint_tensors(args.model, [n + ".weight" for g in groups for n in g])
            for names in groups:
                cross = group_inputs(layer, modules, names[0], states, originals, calls, stored) if args.targets else None
                one = Moments()
                handle = modules[names[0]].register_forward_pre_hook(one.hook(names[0], stop_after=True))
                for state, call in zip(states, calls):
                    try:
                        run_layer(layer, state, call)
                    except StopForward:
                        pass
                handle.remove()
                tensor = one.tensors()[names[0]]
                moments.sums[names[0]], moments.tokens[names[0]] = one.sums[names[0]], one.tokens[names[0]]
                moments.shared.update({n: names[0] for n in names[1:]})
                weights = None
                if cross is not None:
                    weights = asymmetric_targets(stored, names, cross, one.sums[names[0]])
                    targets.update(weights)
                quantize_group(args, modules, names, tensor, one.tokens[names[0]], work, weights)
            if args.targets:
                quantized = {n: modules[n[:-len(".weight")]].weight.detach().clone() for n in stored}
                load_weights(modules, stored)
                originals = [run_layer(layer, state, call) for state, call in zip(originals, calls)]
                load_weights(modules, quantized)
            states = [run_layer(layer, state, call) for state, call in zip(states, calls)]
            print(f"layer {index}: {len(groups)} inputs ({', '.join(g[0].rsplit('.', 1)[-1] for g in groups)})",
                  file=sys.stderr, flush=True)
    if args.targets:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sorted(targets.items())}, args.targets + ".tmp")
        os.replace(args.targets + ".tmp", args.targets)
    # Linears outside the layers that the checkpoint stores (an untied lm_head): their inputs
    # from the model quantized so far (they are quantized last, so nothing else depends on them).
    stored = checkpoint_map(args.model)
    rest = {n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and n + ".weight" in stored
            and n not in moments.sums and n not in moments.shared}
    if rest:
        collect_whole(model, batches, forward, moments, only=rest)
    return moments


TEXT_NAMES = {"docstrings": "python docstrings and reference topics",
              "prose": "english prose: debian-handbook, python tutorial/howto/faq, fortunes",
              "evaluation-oracle": "DIAGNOSTIC ONLY: the evaluation text itself (an upper bound, not a calibration)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--kind", choices=["auto", "causal-lm", "encoder"], default="auto",
                    help=KIND_HELP)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--text", choices=["docstrings", "prose", "evaluation-oracle"], default="docstrings",
                    help="calibration text (texts.py): standard-library docstrings, or general English prose from "
                         "the debian-handbook, python3-doc and fortunes packages; evaluation-oracle is a diagnostic "
                         "only: the evaluation text itself, for an upper bound of what the moments can do (a file "
                         "made from it says so in its metadata and must never be used for a real run)")
    ap.add_argument("--first-window", type=int, default=0, metavar="N",
                    help="skip the first N windows of the calibration text (a disjoint calibration set, to see "
                         "how much a result depends on the text)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--weights", metavar="DEQUANT.safetensors",
                      help="second pass: substitute these tensors (a dequantized first gptq output) before collecting")
    mode.add_argument("--sequential", action="store_true",
                      help="layer by layer, input by input, quantizing with NVFP4 as it goes (see above)")
    ap.add_argument("--nvfp4", default="nvfp4", help="the nvfp4 binary for --sequential (default: nvfp4 on PATH)")
    ap.add_argument("--targets", metavar="TARGETS.safetensors",
                    help="--sequential, experimental: quantize W* = the least-squares map from the quantized "
                         "inputs to the original outputs instead of W, and write every W* (fp32) here")
    ap.add_argument("--quantize-arg", action="append", default=[], metavar="ARG",
                    help="an extra `nvfp4 quantize` argument for --sequential (repeat; give the same to the final run)")
    args = ap.parse_args()
    if (args.quantize_arg or args.nvfp4 != "nvfp4" or args.targets) and not args.sequential:
        ap.error("--nvfp4, --quantize-arg and --targets apply to --sequential only")

    from transformers import AutoTokenizer

    args.kind, loader = model_loader(args.model, args.kind)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = loader.from_pretrained(args.model, dtype=torch.float32).eval()

    if args.text == "evaluation-oracle":
        text = texts.evaluation_text()
    else:
        text = " ".join(texts.calibration_sentences(100000, args.text))
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    window = min(args.window, getattr(model.config, "max_position_embeddings", args.window))
    ids = ids[args.first_window * window:]
    count = min(args.windows, ids.numel() // window)
    if count == 0:
        raise SystemExit("error: not enough calibration text for one window")
    if count < args.windows:
        print(f"warning: the calibration text holds {count} windows of {window} tokens, not {args.windows}", file=sys.stderr)
    windows = ids[:count * window].reshape(count, window)
    batches = [windows[i:i + args.batch] for i in range(0, count, args.batch)]
    options = {"use_cache": False} if args.kind == "causal-lm" else {}

    def forward(batch):
        return model(input_ids=batch, **options)

    inputs = "original"
    if args.weights:
        changed = substitute(model, args.weights)
        print(f"{args.weights}: {changed} tensors substituted", file=sys.stderr)
        inputs = f"substituted from {os.path.abspath(args.weights)}"
        moments = collect_whole(model, batches, forward)
    elif args.sequential:
        inputs = f"sequential, nvfp4 quantize --method gptq {' '.join(args.quantize_arg)}".strip()
        moments = collect_sequential(model, batches, forward, args)
    else:
        moments = collect_whole(model, batches, forward)
    tokens = count * window
    tensors = moments.tensors()
    write_statistics(args.out, tensors, moments.shared, tokens,
                     {"model": os.path.abspath(args.model), "inputs": inputs,
                      "calibration": f"{TEXT_NAMES[args.text]} (texts.py), {count} windows of {window} "
                                     f"tokens from window {args.first_window}"})
    print(f"{args.out}: {len(tensors)} inputs for {len(tensors) + len(moments.shared)} linear modules, {tokens} tokens",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
