import torch, time
torch.manual_seed(0)
shapes=[(2048,2048)]*4+[(8192,2048),(2048,8192)]
W=[torch.randn(o,i)*0.02 for o,i in shapes]
L=6  # 6 layers worth of weights to beat cache (6*~50MB)
Ws=[[w.clone() for w in W] for _ in range(L)]
def run(M, packed):
    xs={i:torch.randn(M,i) for o,i in shapes}
    if packed:
        P=[[torch.ops.mkldnn._reorder_linear_weight(w,8) for w in ws] for ws in Ws]
        f=lambda x,w: torch.ops.mkldnn._linear_pointwise(x,w,None,"none",[],"")
    else:
        P=Ws; f=lambda x,w: torch.nn.functional.linear(x,w)
    for _ in range(2):
        for ws in P:
            for (o,i),w in zip(shapes,ws): f(xs[i],w)
    t=time.perf_counter(); n=5
    for _ in range(n):
        for ws in P:
            for (o,i),w in zip(shapes,ws): f(xs[i],w)
    return (time.perf_counter()-t)/n/L*1e3
for packed in (False,True):
    for M in (1,2,4,8,16):
        print("packed" if packed else "dense", M, f"{run(M,packed):.2f} ms/layer")
