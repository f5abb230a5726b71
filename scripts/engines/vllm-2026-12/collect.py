#!/usr/bin/env python3
"""Run scripts/quality/collect_statistics.py unchanged, but with the calibration sentences that were
produced on the workstation (Python 3.11 docstrings, calib_sentences.json) and 16 CPU threads.
Usage: collect.py REPO MODEL_DIR OUT.safetensors"""
import json, os, sys
repo, model, out = sys.argv[1:4]
sys.path.insert(0, os.path.join(repo, "scripts/quality"))
import texts
sentences = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calib_sentences.json")))
texts.calibration_sentences = lambda count: sentences[:count]
import torch
_set = torch.set_num_threads
torch.set_num_threads = lambda n: _set(16)
import collect_statistics
sys.argv = ["collect_statistics.py", model, out]
sys.exit(collect_statistics.main())
