#!/usr/bin/env python3
# Regenerates the golden logits of tests/test_ref_model.c from Hugging Face transformers:
#   build/bench/tokwatt export --model tiny-qwen2 --seed 7 --dtype fp32 --out /tmp/gold/tiny-qwen2
#   python3 scripts/golden-logits.py /tmp/gold/tiny-qwen2 40 [POS ...]   (needs torch, transformers)
# The class comes from the export's config.json (architectures: LlamaForCausalLM,
# MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM,
# MixtralForCausalLM, DeepseekV3ForCausalLM, DeepseekV2ForCausalLM), loaded in float64 with eager
# attention (its sliding-window mask included) and the eager (per-expert loop) experts. Loading must use every tensor of the file and
# leave none of the model's uninitialised (missing, unexpected or mismatched keys: an error), so
# the checkpoint names are those transformers expects (the expert tensors go through its
# conversion of per-expert checkpoint names). Prompt tokens replicate tw_prompt_tokens
# (harness/model.c) with seed 11; prints the logits of vocab ids 0, 1, 2, 100, 299 (vocab - 1
# when the vocabulary is smaller) at positions POS (default: the first and the last).
import json, sys
import torch
import transformers
from transformers import AutoModelForCausalLM
M = (1 << 64) - 1
def sm(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)
def prompt(seed, b, n, vocab):
    base = sm(seed ^ 0x70726f6d70740000)
    return [sm((base + b * 1000003 + i) & M) % vocab for i in range(n)]
d = sys.argv[1]; n = int(sys.argv[2])
pos = [int(p) for p in sys.argv[3:]] or [0, n - 1]
cfg = json.load(open(d + "/config.json"))
m, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager",
                                               experts_implementation="eager",
                                               output_loading_info=True)
bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
if bad:
    sys.exit("loading %s left keys unmatched: %s" % (d, bad))
m.eval()
print("#", type(m).__name__, "transformers", transformers.__version__, "torch", torch.__version__)
toks = prompt(11, 0, n, cfg["vocab_size"])
with torch.no_grad():
    out = m(torch.tensor([toks])).logits[0]
ids = (0, 1, 2, 100, 299 if cfg["vocab_size"] > 299 else cfg["vocab_size"] - 1)
print("# ids", ids)
for p in pos:
    print(p, [repr(out[p, i].item()) for i in ids])
