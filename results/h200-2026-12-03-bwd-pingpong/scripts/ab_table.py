import json,sys,collections
d=sys.argv[1]; names=sys.argv[2].split(',')  # e.g. tma,turns,cpasync ; ratios vs last
def load(f):
    r=collections.defaultdict(list)
    try:
        for l in open(f):
            j=json.loads(l)
            if 'tflops' not in j: continue
            r[(j.get('impl'),j['dtype'],j['hdim'],j['causal'],j['seqlen'],j['mode'])].append(j['tflops'])
    except FileNotFoundError: pass
    return r
V={n:load(f"{d}/bench-{n}.jsonl") for n in names}; t=load(d+'/torch.jsonl')
base=names[-1]
hdr="hd  causal seqlen | "+" | ".join(f"{n:>7}" for n in names)+" | "+" | ".join(f"{n}/{base}" for n in names[:-1])+" | flash cudnn | "+" | ".join(f"{n}/cudnn" for n in names[:-1])
print(hdr)
m=lambda v: sum(v)/len(v) if v else float('nan')
for k in sorted(V[names[0]], key=lambda k:(k[2],k[3],k[4])):
    vals=[m(V[n].get(k)) for n in names]
    tk=lambda impl: t.get(('torch-'+impl,)+k[1:],[float('nan')])[-1]
    fl,cu=tk('flash'),tk('cudnn')
    print(f"{k[2]:3} {str(k[3]):5} {k[4]:6} | "+" | ".join(f"{v:7.1f}" for v in vals)+" | "+" | ".join(f"{v/vals[-1]:6.3f}" for v in vals[:-1])+f" | {fl:5.0f} {cu:5.0f} | "+" | ".join(f"{v/cu:5.2f}" for v in vals[:-1]))
