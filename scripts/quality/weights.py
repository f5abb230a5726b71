"""Putting dequantized tensors (`nvfp4 dequantize --dtype f32`) into a loaded Hugging Face model."""
import torch


def substitute(model, path: str) -> int:
    """Copies the tensors of the safetensors file `path` that the model has into it (as fp32) and
    returns how many differed from the model's; a tensor of another shape is an error."""
    from safetensors.torch import load_file
    state = model.state_dict()
    changed = 0
    for name, tensor in load_file(path).items():
        if name not in state:
            continue  # buffers a checkpoint carries but the model does not persist
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise SystemExit(f"error: {path}: tensor {name} has shape {tuple(tensor.shape)}, the model {tuple(state[name].shape)}")
        if not torch.equal(tensor.float(), state[name].float()):
            changed += 1
        state[name].copy_(tensor.float())
    return changed
