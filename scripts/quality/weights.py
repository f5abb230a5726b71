"""Putting dequantized tensors (`nvfp4 dequantize --dtype f32`) into a loaded Hugging Face model,
and writing a copy of a checkpoint with some tensors replaced."""
import json
import os
import shutil

import torch


KIND_HELP = "auto: causal-lm when config.json's architectures name a *ForCausalLM, else encoder"


def model_loader(model_dir: str, kind: str):
    """(kind, transformers Auto class) for `kind` "auto", "causal-lm" or "encoder" (KIND_HELP)."""
    from transformers import AutoModel, AutoModelForCausalLM
    if kind == "auto":
        with open(os.path.join(model_dir, "config.json")) as f:
            architectures = json.load(f).get("architectures") or []
        kind = "causal-lm" if any(a.endswith("ForCausalLM") for a in architectures) else "encoder"
    return kind, (AutoModelForCausalLM if kind == "causal-lm" else AutoModel)


def safetensors_files(path: str) -> list[str]:
    """`path` itself, or every *.safetensors file of the folder `path` in name order."""
    if not os.path.isdir(path):
        return [path]
    return [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".safetensors")]


def substitute(model, path: str) -> int:
    """Copies the tensors of the safetensors file `path` (or of every such file of the folder
    `path`) that the model has into it (as fp32) and returns how many differed from the model's;
    a tensor of another shape is an error."""
    from safetensors.torch import load_file
    state = model.state_dict()
    changed = 0
    for file in safetensors_files(path):
        for name, tensor in load_file(file).items():
            if name not in state:
                continue  # buffers a checkpoint carries but the model does not persist
            if tuple(tensor.shape) != tuple(state[name].shape):
                raise SystemExit(f"error: {file}: tensor {name} has shape {tuple(tensor.shape)}, the model {tuple(state[name].shape)}")
            if not torch.equal(tensor.float(), state[name].float()):
                changed += 1
            state[name].copy_(tensor.float())
    return changed


# Weights in other formats, which nvfp4 never reads: not copied.
OTHER_WEIGHT_FILES = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")


def write_replaced(model_dir: str, replacements: dict, out_dir: str) -> None:
    """Copies the model folder `model_dir` into the new folder `out_dir`, with every tensor named
    in `replacements` replaced (same shape required; stored in the shard's dtype) in the shard that holds it; the
    shards keep their metadata, the other files are copied as they are (but not subfolders, nor
weights in other formats)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    os.makedirs(out_dir)
    left = dict(replacements)
    for name in sorted(os.listdir(model_dir)):
        source, target = os.path.join(model_dir, name), os.path.join(out_dir, name)
        if not name.endswith(".safetensors"):
            if os.path.isfile(source) and not name.endswith(OTHER_WEIGHT_FILES):
                shutil.copyfile(source, target)
            continue
        with safe_open(source, "pt") as f:
            metadata = f.metadata()
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        for key in tensors.keys() & left.keys():
            new = left.pop(key)
            if new.shape != tensors[key].shape:
                raise SystemExit(f"error: {source}: {key} is {list(tensors[key].shape)}, its replacement {list(new.shape)}")
            tensors[key] = new.to(tensors[key].dtype).contiguous()
        save_file(tensors, target, metadata=metadata)
    if left:
        raise SystemExit(f"error: {model_dir}: no tensor named {sorted(left)[0]} ({len(left)} replacements unused)")
