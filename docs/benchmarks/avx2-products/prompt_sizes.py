import torch, time, statistics as st
torch.manual_seed(0)
shapes=[(2048,2048)]*4+[(8192,2048),(2048,8192)]
W=[torch.randn(o,i)*0.02 for o,i in shapes]
fp=lambda x,w: torch.ops.mkldnn._linear_pointwise(x,w,None,"none",[],"")
fd=lambda x,w: torch.nn.functional.linear(x,w)
P8=[torch.ops.mkldnn._reorder_linear_weight(w,8) for w in W]
X={M:{i:torch.randn(M,i) for o,i in shapes} for M in (280,2320)}
V={"dense":(fd,W),"packed8":(fp,P8),"onednn-plain":(fp,W)}
R={}
for rep in range(6):
    for M in (280,2320):
        for k,(f,P) in V.items():
            t=time.perf_counter()
            for _ in range(8 if M==280 else 1):
                for (o,i),w in zip(shapes,P): f(X[M][i],w)
            R.setdefault((M,k),[]).append((time.perf_counter()-t)/(8 if M==280 else 1))
for (M,k),v in R.items(): print(M,k, f"median {st.median(v[1:])*1e3:.0f} ms  {2*48e6*M/st.median(v[1:])/1e9:.0f} GFLOP/s", [round(x*1e3) for x in v])
