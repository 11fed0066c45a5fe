//! Kernel counters and settings of one network namespace: nstat, conntrack -S, ss -lnt, ip link/addr/route.
