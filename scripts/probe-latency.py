#!/usr/bin/env python3
"""Diagnostic probe used for BENCHMARKS.md (b): GET /healthz at 500 requests/s on one keep-alive
connection to a running server, and every 0.5 s the latency p50/max, the CPU % of each server
thread (by name), of redis-server (its threads; forked children are only counted), and of the
whole machine, all read from /proc.

Usage: probe-latency.py PORT SERVER_PID REDIS_PID SECONDS
"""
import http.client, time, sys, os, glob
port=int(sys.argv[1]); spid=sys.argv[2]; rpid=sys.argv[3]; dur=float(sys.argv[4])
c=http.client.HTTPConnection('127.0.0.1',port)
def cpu(pid):
    out={}
    for t in glob.glob(f'/proc/{pid}/task/*'):
        try:
            f=open(t+'/stat').read(); comm=f[f.index('(')+1:f.rindex(')')]; v=f[f.rindex(')')+2:].split()
            out[comm]=out.get(comm,0)+int(v[11])+int(v[12])
        except Exception: pass
    return out
def rcpu(pid):
    ch=[l.strip() for l in os.popen(f'pgrep -P {pid}')]
    return (sum(cpu(pid).values()), len(ch))
def syscpu():
    v=open('/proc/stat').readline().split()[1:]; v=list(map(int,v)); return sum(v)-v[3]-v[4]
start=time.time(); nxt=start; bucket=start; lat=[]; c0=cpu(spid); r0=rcpu(rpid); s0=syscpu()
print("t  n  p50ms  maxms  | cpu% per thread (server) | redis%")
while time.time()-start<dur:
    now=time.time()
    if now<nxt: time.sleep(nxt-now)
    t=time.perf_counter(); c.request('GET','/healthz'); r=c.getresponse(); r.read(); lat.append((time.perf_counter()-t)*1000)
    nxt+=0.002
    if time.time()-bucket>=0.5:
        c1=cpu(spid); r1=rcpu(rpid); s1=syscpu(); el=time.time()-bucket
        lat.sort()
        th=' '.join(f"{k[10:15]}={(c1.get(k,0)-c0.get(k,0))/el:.0f}" for k in sorted(c1) if c1.get(k,0)-c0.get(k,0)>2)
        print(f"{time.time()-start:5.1f} {len(lat):4d} {lat[len(lat)//2]:.2f} {lat[-1]:6.2f} | {th} | redis {(r1[0]-r0[0])/el:.0f} children {r1[1]} | all {(s1-s0)/el:.0f}")
        sys.stdout.flush()
        lat=[]; c0=c1; r0=r1; s0=s1; bucket=time.time()
