#!/usr/bin/env python3
# Regenerates the golden logits of tests/test_ref_model.c from Hugging Face transformers:
#   build/bench/tokwatt export --model tiny --seed 7 --dtype fp32 --out /tmp/gold/tiny
#   python3 scripts/golden-logits.py /tmp/gold/tiny 70     (needs torch and transformers)
# Prompt tokens replicate tw_prompt_tokens (harness/model.c) with seed 11.
import torch, json, sys
from transformers import LlamaForCausalLM, LlamaConfig
M=(1<<64)-1
def sm(x):
    x=(x+0x9E3779B97F4A7C15)&M
    x=((x^(x>>30))*0xBF58476D1CE4E5B9)&M
    x=((x^(x>>27))*0x94D049BB133111EB)&M
    return x^(x>>31)
def prompt(seed,b,n,vocab):
    base=sm(seed ^ 0x70726f6d70740000)
    return [sm((base+b*1000003+i)&M)%vocab for i in range(n)]
d=sys.argv[1]; n=int(sys.argv[2])
m=LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float64, attn_implementation="eager")
cfg=json.load(open(d+"/config.json"))
toks=prompt(11,0,n,cfg["vocab_size"])
with torch.no_grad():
    out=m(torch.tensor([toks])).logits[0]
for p in (0,n-1):
    print(p, [repr(out[p,i].item()) for i in (0,1,2,100,299)])
