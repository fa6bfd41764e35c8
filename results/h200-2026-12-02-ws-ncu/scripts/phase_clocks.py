"""Mean SM clock and board power of each phase (phases.txt) from nvidia-smi samples (smi.csv), counting
only samples above a power floor (the GPU busy, not a process starting).

  python3 phase_clocks.py DIR [FLOOR_W]
"""
import datetime
import sys

d = sys.argv[1]
floor = float(sys.argv[2]) if len(sys.argv) > 2 else 450.0
phases, current = [], None
for line in open(f"{d}/phases.txt"):
    f = line.split()
    if f[1] == "start":
        current = (f[0], float(f[2]))
    else:
        phases.append((current[0], current[1], float(f[1])))
samples = []
for line in open(f"{d}/smi.csv"):
    f = [x.strip() for x in line.split(",")]
    try:
        t = datetime.datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
        samples.append((t.timestamp(), float(f[1].split()[0]), float(f[2].split()[0])))
    except (ValueError, IndexError):
        pass  # a header or a line of another query
for name, a, b in phases:
    busy = [s for s in samples if a <= s[0] <= b and s[2] > floor]
    if busy:
        clk = sum(s[1] for s in busy) / len(busy)
        watts = sum(s[2] for s in busy) / len(busy)
        print(f"{name:18s} {len(busy):4d} samples  SM clock {clk:5.0f} MHz  power {watts:4.0f} W")
