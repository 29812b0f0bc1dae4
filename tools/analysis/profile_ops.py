"""Where the CPU time goes: ONNX Runtime profile by op type (MicroNet deploy export vs
MobileNetV3-Small x0.5) and torch.profiler of the deploy model in eager, one thread, batch 1.

    OMP_NUM_THREADS=1 python tools/analysis/profile_ops.py [m2]
"""
import copy, json, collections, sys, glob, os
import os.path as osp
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
import torch, onnxruntime as ort
torch.set_num_threads(1)
from tools.analysis.benchmark import build, Logits
from micronet_mm.deploy import switch_to_deploy
name = sys.argv[1] if len(sys.argv) > 1 else 'm2'
m = build(name)
for tag, mod in [(name + '-deploy', switch_to_deploy(copy.deepcopy(m), 'onnxruntime')), ('mnv3-s-050', build('mnv3-s-050'))]:
    p = f'/tmp/micronet_prof_{tag}.onnx'
    torch.onnx.export(Logits(mod).eval(), (torch.randn(1,3,224,224),), p, input_names=['input'], opset_version=17, dynamo=False)
    o = ort.SessionOptions(); o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.enable_profiling = True; o.profile_file_prefix = f'/tmp/micronet_prof_{tag}'
    s = ort.InferenceSession(p, o, providers=['CPUExecutionProvider'])
    x = torch.randn(1,3,224,224).numpy()
    for _ in range(200): s.run(None, {'input': x})
    f = s.end_profiling()
    ev = [e for e in json.load(open(f)) if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')]
    by = collections.defaultdict(lambda: [0, 0])
    for e in ev:
        by[e['args']['op_name']][0] += e['dur']; by[e['args']['op_name']][1] += 1
    runs = 200
    tot = sum(v[0] for v in by.values()) / runs
    print(f'## ORT {tag}: {tot/1000:.2f} ms of kernel time per run, nodes per run {sum(v[1] for v in by.values())//runs}')
    print('| op type | ms/run | share | nodes |'); print('| --- | --- | --- | --- |')
    for k, (d, c) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f'| {k} | {d/runs/1000:.3f} | {100*d/runs/tot:.0f}% | {c//runs} |')
    # MicroNet: the same time by role in the network (from node names and output ranks)
    if 'deploy' not in tag:
        continue

    def role(e):
        name, op = e['name'], e['args']['op_name']
        shape = (e['args'].get('output_type_shape') or [{}])[0]
        rank = len(next(iter(shape.values()), [])) if shape else 0
        if '/head/' in name:
            return 'classifier head (pooling, 2 FC)'
        if '/act' in name:
            if op in ('Mul', 'Add', 'Max', 'Gather') and rank == 4:
                return 'Shift-Max fusions: shift Gather, Mul, Add, Max over the feature map'
            return 'Shift-Max coefficients: ReduceSum, 2 Gemm, Add, Reshape, Split'
        if 'shuffle' in name:
            return 'channel shuffles (Gather)'
        if op in ('Conv', 'FusedConv', 'ReorderInput', 'ReorderOutput') or 'depthwise' in name \
                or 'stem' in name:
            return 'convolutions (+ NCHWc reorders, depthwise bias maps, ReLU6)'
        return 'other (residual Add, ...)'
    roles = collections.defaultdict(lambda: [0, 0])
    for e in ev:
        roles[role(e)][0] += e['dur']; roles[role(e)][1] += 1
    print('| role | ms/run | share | nodes |'); print('| --- | --- | --- | --- |')
    for k, (d, c) in sorted(roles.items(), key=lambda kv: -kv[1][0]):
        print(f'| {k} | {d/runs/1000:.3f} | {100*d/runs/tot:.0f}% | {c//runs} |')
from torch.profiler import profile, ProfilerActivity
d = switch_to_deploy(copy.deepcopy(m), 'pytorch')
x = torch.randn(1,3,224,224)
with torch.no_grad():
    for _ in range(20): d(x, mode='tensor')
    with profile(activities=[ProfilerActivity.CPU]) as pr:
        for _ in range(50): d(x, mode='tensor')
print(f'## torch.profiler, {name} deploy eager, 50 runs')
print(pr.key_averages().table(sort_by='self_cpu_time_total', row_limit=12))
